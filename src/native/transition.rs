//! The rows of a trigger's transition tables (and copies of rows olaclick
//! wrote), read into slots of their own.

use std::ffi::CStr;

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;
use pgrx::IntoDatum;

/// How many rows a trigger's transition table holds (0 when it has none).
///
/// # Safety
/// `table` is null or a transition table valid for this trigger call.
pub unsafe fn rows(table: *mut pg_sys::Tuplestorestate) -> i64 {
    if table.is_null() {
        0
    } else {
        pg_sys::tuplestore_tuple_count(table)
    }
}

/// One row of a statement's transition table (or a copy of a row olaclick
/// wrote), read into a slot of its own.
pub struct TransitionRow {
    slot: *mut pg_sys::TupleTableSlot,
    desc: pg_sys::TupleDesc,
}

impl TransitionRow {
    /// Reads the only row of `table` (a trigger's tg_newtable or
    /// tg_oldtable), shaped like `relation`; `None` unless it has exactly one.
    ///
    /// # Safety
    /// `table` is null or a transition table of the trigger on `relation`,
    /// valid for this trigger call.
    pub unsafe fn only(
        table: *mut pg_sys::Tuplestorestate,
        relation: pg_sys::Relation,
    ) -> Option<TransitionRow> {
        if rows(table) != 1 {
            return None;
        }
        let desc = (*relation).rd_att;
        let slot = pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsMinimalTuple);
        // Other readers of the store each select a read pointer of their own
        // and rewind it; whichever is active is left rewound here too.
        pg_sys::tuplestore_rescan(table);
        let found = pg_sys::tuplestore_gettupleslot(table, true, true, slot);
        pg_sys::tuplestore_rescan(table);
        if !found {
            pg_sys::ExecDropSingleTupleTableSlot(slot);
            return None;
        }
        pg_sys::slot_getallattrs(slot);
        Some(TransitionRow { slot, desc })
    }

    /// Calls `each` with every row of `table` (a trigger's tg_newtable or
    /// tg_oldtable, shaped like `relation`), in order, while it returns
    /// `true`; returns whether it saw them all.
    ///
    /// # Safety
    /// As for `only`.
    pub unsafe fn each(
        table: *mut pg_sys::Tuplestorestate,
        relation: pg_sys::Relation,
        mut each: impl FnMut(&TransitionRow) -> bool,
    ) -> bool {
        if table.is_null() {
            return true;
        }
        let desc = (*relation).rd_att;
        let row = TransitionRow {
            slot: pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsMinimalTuple),
            desc,
        };
        // Rewound before and after, as in `only`; each row is copied into the
        // slot, so what `each` takes from it outlives the next fetch.
        pg_sys::tuplestore_rescan(table);
        let mut all = true;
        while pg_sys::tuplestore_gettupleslot(table, true, true, row.slot) {
            pg_sys::slot_getallattrs(row.slot);
            if !each(&row) {
                all = false;
                break;
            }
        }
        pg_sys::tuplestore_rescan(table);
        all
    }

    /// Every row of `table` (a trigger's tg_newtable or tg_oldtable,
    /// shaped like `relation`), in order, each in a slot of its own.
    ///
    /// # Safety
    /// As for `only`.
    pub unsafe fn all(
        table: *mut pg_sys::Tuplestorestate,
        relation: pg_sys::Relation,
    ) -> Vec<TransitionRow> {
        let mut rows = Vec::new();
        TransitionRow::each(table, relation, |row| {
            rows.push(TransitionRow::copy_of(row.slot, row.desc));
            true
        });
        rows
    }

    /// A row of its own with the contents of `slot` (shaped like `desc`).
    ///
    /// # Safety
    /// `slot` is a filled slot whose descriptor is `desc`.
    pub unsafe fn copy_of(
        slot: *mut pg_sys::TupleTableSlot,
        desc: pg_sys::TupleDesc,
    ) -> TransitionRow {
        let own = pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsMinimalTuple);
        pg_sys::ExecCopySlot(own, slot);
        pg_sys::slot_getallattrs(own);
        TransitionRow { slot: own, desc }
    }

    fn index(&self, name: &CStr) -> Option<usize> {
        // SAFETY: `desc` is the relation's descriptor, valid for this call.
        let attno = unsafe { pg_sys::SPI_fnumber(self.desc, name.as_ptr()) };
        usize::try_from(attno).ok().and_then(|a| a.checked_sub(1))
    }

    /// The raw value of column `name`; `None` for NULL or no such column.
    pub fn datum(&self, name: &CStr) -> Option<Datum> {
        let i = self.index(name)?;
        // SAFETY: slot_getallattrs filled `natts` values and nulls.
        unsafe { (!*(*self.slot).tts_isnull.add(i)).then(|| *(*self.slot).tts_values.add(i)) }
    }

    /// Column `name` as a Rust value; `None` for NULL, no such column, or a
    /// column whose type is not `T`'s (a DBA retyped it): never a value
    /// read as a type it isn't.
    pub fn get<T: FromDatum + IntoDatum>(&self, name: &CStr) -> Option<T> {
        let i = self.index(name)?;
        // SAFETY: as above; the column's type is checked to be `T`'s.
        unsafe {
            let attr = crate::compat::attrs(self.desc)[i];
            if !T::is_compatible_with(attr.atttypid) {
                return None;
            }
            T::from_polymorphic_datum(
                *(*self.slot).tts_values.add(i),
                *(*self.slot).tts_isnull.add(i),
                attr.atttypid,
            )
        }
    }

    /// Column `name` as an integer, whichever integer type it has (the
    /// contract lets integer columns be widened to bigint); `None` for NULL,
    /// no such column, a value out of `i32`'s range or another type.
    pub fn integer(&self, name: &CStr) -> Option<i32> {
        self.get::<i32>(name)
            .or_else(|| self.get::<i64>(name).and_then(|v| i32::try_from(v).ok()))
            .or_else(|| self.get::<i16>(name).map(i32::from))
    }

    /// The raw value of column `name` if the column has type `typ`:
    /// `Err(())` when it is missing or of another type, `Ok(None)` for NULL.
    pub fn typed(&self, name: &CStr, typ: Oid) -> Result<Option<Datum>, ()> {
        let i = self.index(name).ok_or(())?;
        // SAFETY: `desc` is the relation's descriptor, valid for this call.
        let attr = unsafe { crate::compat::attrs(self.desc)[i] };
        if attr.atttypid != typ {
            return Err(());
        }
        Ok(self.datum(name))
    }

    /// The row as a composite datum of the relation's row type.
    pub fn composite(&self) -> Datum {
        // SAFETY: a filled slot; the datum is palloc'd in the current context.
        unsafe { pg_sys::ExecFetchSlotHeapTupleDatum(self.slot) }
    }

    /// The slot's descriptor and values, for column-by-column comparison.
    pub fn columns(&self) -> impl Iterator<Item = (&CStr, Oid, Option<Datum>)> + '_ {
        // SAFETY: as above.
        unsafe {
            let natts = (*self.desc).natts as usize;
            (0..natts).filter_map(move |i| {
                let attr = &crate::compat::attrs(self.desc)[i];
                if attr.attisdropped {
                    return None;
                }
                let value =
                    (!*(*self.slot).tts_isnull.add(i)).then(|| *(*self.slot).tts_values.add(i));
                Some((
                    CStr::from_ptr(attr.attname.data.as_ptr()),
                    attr.atttypid,
                    value,
                ))
            })
        }
    }
}

impl Drop for TransitionRow {
    fn drop(&mut self) {
        // On an error, the (sub)transaction abort frees the slot's memory;
        // PostgreSQL is not called while an error unwinds.
        if !std::thread::panicking() {
            // SAFETY: the slot was made by `only` and is dropped once.
            unsafe { pg_sys::ExecDropSingleTupleTableSlot(self.slot) };
        }
    }
}
