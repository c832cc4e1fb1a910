//! Publication row filters (`FOR TABLE t WHERE (…)`), evaluated the way pgoutput evaluates them:
//! the publication's stored expression (PostgreSQL's node text in `pg_publication_rel.prqual`),
//! coerced to boolean, planned and run against a tuple; NULL counts as false.

use std::ffi::CString;

use pgrx::pg_sys;

/// Whether `tuple` (with descriptor `tupdesc`) passes at least one of `quals`.
///
/// The expression is prepared in the current memory context, which the caller resets (the
/// plugin's per-change context).
///
/// # Safety
/// Inside a decoding callback; `tuple` is a valid heap tuple of `tupdesc`, which is the row type
/// of the relation the expressions were written for.
pub unsafe fn passes(
    quals: &[String],
    tupdesc: pg_sys::TupleDesc,
    tuple: pg_sys::HeapTuple,
) -> bool {
    // SAFETY: as the caller guarantees; every object lives in the current memory context.
    unsafe {
        let mut nodes: *mut pg_sys::List = std::ptr::null_mut();
        let mut first: *mut pg_sys::Node = std::ptr::null_mut();
        for q in quals {
            let text = CString::new(q.as_str()).unwrap_or_default();
            let node = pg_sys::stringToNode(text.as_ptr()) as *mut pg_sys::Node;
            if first.is_null() {
                first = node;
            }
            nodes = pg_sys::lappend(nodes, node.cast());
        }
        if first.is_null() {
            return true;
        }
        let node = if quals.len() == 1 {
            first
        } else {
            pg_sys::makeBoolExpr(pg_sys::BoolExprType::OR_EXPR, nodes, -1) as *mut pg_sys::Node
        };
        let node = pg_sys::coerce_to_target_type(
            std::ptr::null_mut(),
            node,
            pg_sys::exprType(node),
            pg_sys::BOOLOID,
            -1,
            pg_sys::CoercionContext::COERCION_ASSIGNMENT,
            pg_sys::CoercionForm::COERCE_IMPLICIT_CAST,
            -1,
        );
        let expr = pg_sys::expression_planner(node as *mut pg_sys::Expr);
        let state = pg_sys::ExecInitExpr(expr, std::ptr::null_mut());
        let slot = pg_sys::MakeSingleTupleTableSlot(tupdesc, &pg_sys::TTSOpsHeapTuple);
        pg_sys::ExecStoreHeapTuple(tuple, slot, false);
        let econtext = pg_sys::CreateStandaloneExprContext();
        (*econtext).ecxt_scantuple = slot;
        let mut isnull = false;
        // ExecEvalExprSwitchContext, a static inline function of executor.h.
        let prior = pg_sys::MemoryContextSwitchTo((*econtext).ecxt_per_tuple_memory);
        let value = match (*state).evalfunc {
            // An ERROR inside must not unwind through Rust frames unguarded.
            Some(eval) => pg_sys::ffi::pg_guard_ffi_boundary(|| eval(state, econtext, &mut isnull)),
            None => pg_sys::Datum::from(0),
        };
        pg_sys::MemoryContextSwitchTo(prior);
        let passed = !isnull && value.value() != 0;
        pg_sys::FreeExprContext(econtext, true);
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        passed
    }
}
