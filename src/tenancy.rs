//! A restaurant's creator is one of its own users.
//!
//! Every other tenant reference is a composite foreign key (`sql/schema.sql`).
//! This one cannot be: users reference their restaurant, so a key back from
//! restaurants to users makes a cycle, and pg_restore, which loads each
//! extension table in its own transaction, could then load neither table. So
//! the same rule is kept by this pair of triggers, which let a restore load
//! restaurants before their users. Both read as the tables' owner, as a
//! foreign key check does: what row-level security shows the caller must not
//! decide whether a creator exists.

use pgrx::prelude::*;

use crate::error::{column, Error};
use crate::plans::Stmt;
use crate::refusal::Refusal;
use crate::restore::restoring;
use crate::sandbox;

// FOR KEY SHARE: the user can't be deleted or moved until we commit, as a
// foreign key check would lock it.
static USER_TENANT: Stmt = Stmt {
    sql: "SELECT restaurant_id FROM olaclick.users WHERE id = $1 FOR KEY SHARE",
    args: &[PgBuiltInOids::INT4OID],
};

static CREATED_RESTAURANT: Stmt = Stmt {
    sql: "SELECT EXISTS (SELECT 1 FROM olaclick.restaurants WHERE id = $1 AND created_by_user_id = $2)",
    args: &[PgBuiltInOids::INT4OID, PgBuiltInOids::INT4OID],
};

/// BEFORE INSERT OR UPDATE OF created_by_user_id ON restaurants FOR EACH ROW.
#[pg_trigger]
fn restaurants_creator_check<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, Error> {
    let row = trigger
        .new()
        .ok_or(Error::WrongEvent("restaurants_creator_check"))?;
    let (Some(restaurant), Some(user)) = (
        column::<i32, _>(&row, "restaurants", "id"),
        column::<i32, _>(&row, "restaurants", "created_by_user_id"),
    ) else {
        return Ok(Some(row));
    };
    let owner = sandbox::as_owner(trigger.trigger_data().tg_relation, || {
        Spi::connect_mut(|client| {
            USER_TENANT
                .first(client, &[user.into()], |row| row.get_one::<i32>())
                .map(Option::flatten)
        })
    })?;
    match owner {
        Some(owner) if owner == restaurant => {}
        None if restoring() => {}
        _ => Refusal::creator_not_a_user(user, restaurant, owner).raise(),
    }
    Ok(Some(row))
}

/// BEFORE DELETE OR UPDATE OF id, restaurant_id ON users FOR EACH ROW: the
/// other half of the rule, as ON DELETE / ON UPDATE NO ACTION would be.
#[pg_trigger]
fn users_creator_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, Error> {
    let old = trigger
        .old()
        .ok_or(Error::WrongEvent("users_creator_guard"))?;
    let (Some(user), Some(restaurant)) = (
        column::<i32, _>(&old, "users", "id"),
        column::<i32, _>(&old, "users", "restaurant_id"),
    ) else {
        return Ok(trigger.new().or(Some(old)));
    };
    if let Some(new) = trigger.new() {
        let same = column::<i32, _>(&new, "users", "id") == Some(user)
            && column::<i32, _>(&new, "users", "restaurant_id") == Some(restaurant);
        if same {
            return Ok(Some(new));
        }
    }
    // When the restaurant itself is being deleted (the cascade), it is no
    // longer visible here and the user may go with it.
    let referenced = sandbox::as_owner(trigger.trigger_data().tg_relation, || {
        Spi::connect_mut(|client| {
            CREATED_RESTAURANT.run(client, &[restaurant.into(), user.into()], |rows| {
                rows.first().get_one::<bool>()
            })
        })
    })?;
    if referenced == Some(true) {
        Refusal::user_is_creator(user, restaurant).raise();
    }
    Ok(trigger.new().or(Some(old)))
}
