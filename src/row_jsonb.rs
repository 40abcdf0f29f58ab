//! An audited row as jsonb, the jsonb `to_jsonb(row)` makes, built without
//! its per-row catalog lookups and text round trips.
//!
//! Why: `to_jsonb` works out each column's JSON category from the catalog
//! (domain base type, array or composite, a user type's cast to json, its
//! output function) for every row, and turns every number into text and
//! parses it back; in an order's life that was about 3% of the backend's
//! time. The category depends on the column's type alone, so it is worked out
//! once per type and kept until a type or a cast changes (syscache
//! callbacks). Values become what PostgreSQL 15's `datum_to_jsonb` makes of
//! them: integers and numerics the same numeric (floats through their output
//! and `numeric_in`; NaN and infinities the strings their output writes),
//! dates and timestamps `JsonEncodeDateTime`'s string, booleans booleans, any
//! other type the string its output function writes. A row with a column of
//! another kind (json, jsonb, arrays, composites, a user type with a cast to
//! json) is left to `to_jsonb` itself. Excluded columns are left out rather
//! than deleted afterwards; `pushJsonbValue` sorts the keys, as always.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;

use crate::native::TransitionRow;

/// How `datum_to_jsonb` converts a column's values, when it is built here.
#[derive(Clone, Copy)]
enum Kind {
    Bool,
    /// int2, int4, int8: the numeric of the same value (what numeric_in
    /// makes of their output).
    Integer(Oid),
    /// numeric: the value itself (what numeric_in makes of its output),
    /// NaN and ±Infinity as strings.
    Numeric,
    /// float4, float8: output function, then numeric_in (NaN and
    /// ±Infinity as strings).
    Float(Oid),
    /// date, timestamp, timestamptz (the base type).
    DateTime(Oid),
    /// Any other scalar: the string its output function writes.
    Text(Oid),
}

thread_local! {
    /// Per type: how its values convert, `None` for those left to to_jsonb
    /// (json, jsonb, arrays, composites, user types with a cast to json).
    static KINDS: RefCell<HashMap<Oid, Option<Kind>>> = RefCell::new(HashMap::new());
    /// Bumped by every `forget`: a kind worked out while a change arrived
    /// is used once and not kept.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// Forgets every kind worked out (a type or a cast changed).
pub fn forget() {
    KINDS.with(|kinds| kinds.borrow_mut().clear());
    GENERATION.with(|g| g.set(g.get() + 1));
}

/// The syscache callback for pg_type and pg_cast.
///
/// # Safety
/// Called by PostgreSQL's invalidation machinery; reads nothing.
#[pg_guard]
unsafe extern "C-unwind" fn on_type_or_cast_change(_arg: Datum, _cache: i32, _hash: u32) {
    forget();
}

/// Registers the callbacks (once per backend, from _PG_init).
pub fn init() {
    // SAFETY: registering static callbacks with no argument.
    unsafe {
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::TYPEOID as _,
            Some(on_type_or_cast_change),
            Datum::from(0),
        );
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::CASTSOURCETARGET as _,
            Some(on_type_or_cast_change),
            Datum::from(0),
        );
    }
}

/// jsonb_categorize_type of PostgreSQL 15, for the kinds built here.
fn kind_of(typ: Oid) -> Option<Kind> {
    if let Some(kind) = KINDS.with(|k| k.borrow().get(&typ).copied()) {
        return kind;
    }
    let generation = GENERATION.with(Cell::get);
    // SAFETY: catalog lookups by type OID; each raises an ERROR rather than
    // returning garbage.
    let kind = unsafe {
        let base = pg_sys::getBaseType(typ);
        let output = || {
            let (mut func, mut varlena) = (Oid::INVALID, false);
            pg_sys::getTypeOutputInfo(base, &mut func, &mut varlena);
            func
        };
        match base {
            pg_sys::BOOLOID => Some(Kind::Bool),
            pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID => Some(Kind::Integer(base)),
            pg_sys::NUMERICOID => Some(Kind::Numeric),
            pg_sys::FLOAT4OID | pg_sys::FLOAT8OID => Some(Kind::Float(output())),
            pg_sys::DATEOID | pg_sys::TIMESTAMPOID | pg_sys::TIMESTAMPTZOID => {
                Some(Kind::DateTime(base))
            }
            pg_sys::JSONOID | pg_sys::JSONBOID => None,
            _ if pg_sys::get_element_type(base) != Oid::INVALID
                || base == pg_sys::ANYARRAYOID
                || base == pg_sys::ANYCOMPATIBLEARRAYOID
                || base == pg_sys::RECORDARRAYOID
                || pg_sys::type_is_rowtype(base) =>
            {
                None
            }
            _ => {
                let mut cast = Oid::INVALID;
                let user_type = base.to_u32() >= pg_sys::FirstNormalObjectId;
                if user_type
                    && pg_sys::find_coercion_pathway(
                        pg_sys::JSONOID,
                        base,
                        pg_sys::CoercionContext::COERCION_EXPLICIT,
                        &mut cast,
                    ) == pg_sys::CoercionPathType::COERCION_PATH_FUNC
                    && cast != Oid::INVALID
                {
                    None
                } else {
                    Some(Kind::Text(output()))
                }
            }
        }
    };
    if GENERATION.with(Cell::get) == generation {
        KINDS.with(|k| k.borrow_mut().insert(typ, kind));
    }
    kind
}

/// A C string as a jsonb string value (the string is not copied: it must
/// outlive the object being built).
///
/// # Safety
/// `text` is a NUL-terminated string.
unsafe fn string(text: *const std::ffi::c_char) -> pg_sys::JsonbValue {
    let len = std::ffi::CStr::from_ptr(text).to_bytes().len();
    // As PostgreSQL's checkStringLen: a jsonb string holds up to 256 MB.
    if len > pg_sys::JENTRY_OFFLENMASK as usize {
        crate::refusal::Refusal::jsonb_string_too_long(pg_sys::JENTRY_OFFLENMASK as usize).raise();
    }
    let mut value: pg_sys::JsonbValue = std::mem::zeroed();
    value.type_ = pg_sys::jbvType::jbvString;
    value.val.string = pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_1 {
        len: len as i32,
        val: text.cast_mut(),
    };
    value
}

/// A numeric as a jsonb number value (not copied, as for `string`).
fn number(numeric: pg_sys::Numeric) -> pg_sys::JsonbValue {
    // SAFETY: an all-zero JsonbValue is a valid (null) value to fill in.
    let mut n: pg_sys::JsonbValue = unsafe { std::mem::zeroed() };
    n.type_ = pg_sys::jbvType::jbvNumeric;
    n.val.numeric = numeric;
    n
}

/// The jsonb of one column's value.
///
/// # Safety
/// `value` is a datum of the column's type, valid for this call.
unsafe fn value(kind: Kind, value: Option<Datum>) -> pg_sys::JsonbValue {
    let Some(datum) = value else {
        let mut null: pg_sys::JsonbValue = std::mem::zeroed();
        null.type_ = pg_sys::jbvType::jbvNull;
        return null;
    };
    match kind {
        Kind::Bool => {
            let mut b: pg_sys::JsonbValue = std::mem::zeroed();
            b.type_ = pg_sys::jbvType::jbvBool;
            b.val.boolean = datum.value() != 0;
            b
        }
        Kind::Integer(typ) => {
            let value = match typ {
                pg_sys::INT2OID => datum.value() as i16 as i64,
                pg_sys::INT4OID => datum.value() as i32 as i64,
                _ => datum.value() as i64,
            };
            number(pg_sys::int64_to_numeric(value))
        }
        Kind::Numeric => {
            // A value read from a tuple may have a short header: detoasted
            // to the plain form a jsonb numeric is stored in.
            let numeric: pg_sys::Numeric = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()).cast();
            if pg_sys::numeric_is_nan(numeric) || pg_sys::numeric_is_inf(numeric) {
                string(pg_sys::OidOutputFunctionCall(
                    pg_sys::Oid::from(pg_sys::F_NUMERIC_OUT),
                    datum,
                ))
            } else {
                number(numeric)
            }
        }
        Kind::Float(output) => {
            let text = pg_sys::OidOutputFunctionCall(output, datum);
            let digits = std::ffi::CStr::from_ptr(text).to_bytes();
            if digits.iter().any(|&c| c == b'N' || c == b'n') {
                return string(text);
            }
            match pgrx::direct_function_call_as_datum(
                pg_sys::numeric_in,
                &[
                    Some(Datum::from(text)),
                    Some(Datum::from(Oid::INVALID)),
                    Some(Datum::from(-1i32)),
                ],
            ) {
                Some(numeric) => number(numeric.cast_mut_ptr()),
                None => string(text),
            }
        }
        Kind::DateTime(typ) => string(pg_sys::JsonEncodeDateTime(
            std::ptr::null_mut(),
            datum,
            typ,
            std::ptr::null(),
        )),
        Kind::Text(output) => string(pg_sys::OidOutputFunctionCall(output, datum)),
    }
}

/// `to_jsonb(row) - excluded`, built natively; `None` when a column's kind
/// is one to_jsonb must convert itself.
pub fn of(row: &TransitionRow, excluded: &[String]) -> Option<Datum> {
    let columns = row
        .columns()
        .filter(|(name, _, _)| !excluded.iter().any(|e| e.as_bytes() == name.to_bytes()))
        .map(|(name, typ, datum)| Some((name, kind_of(typ)?, datum)))
        .collect::<Option<Vec<_>>>()?;
    // SAFETY: keys point into the row's descriptor and values into memory of
    // the current context, both valid until JsonbValueToJsonb has copied them.
    unsafe {
        let mut state: *mut pg_sys::JsonbParseState = std::ptr::null_mut();
        pg_sys::pushJsonbValue(
            &mut state,
            pg_sys::JsonbIteratorToken::WJB_BEGIN_OBJECT,
            std::ptr::null_mut(),
        );
        for (name, kind, datum) in columns {
            let mut key = string(name.as_ptr());
            pg_sys::pushJsonbValue(&mut state, pg_sys::JsonbIteratorToken::WJB_KEY, &mut key);
            let mut value = value(kind, datum);
            pg_sys::pushJsonbValue(
                &mut state,
                pg_sys::JsonbIteratorToken::WJB_VALUE,
                &mut value,
            );
        }
        let object = pg_sys::pushJsonbValue(
            &mut state,
            pg_sys::JsonbIteratorToken::WJB_END_OBJECT,
            std::ptr::null_mut(),
        );
        Some(Datum::from(pg_sys::JsonbValueToJsonb(object)))
    }
}
