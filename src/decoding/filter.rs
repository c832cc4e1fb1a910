//! Publication row filters (`FOR TABLE t WHERE (…)`), evaluated the way pgoutput evaluates them:
//! the publication's stored expression (PostgreSQL's node text in `pg_publication_rel.prqual`),
//! coerced to boolean, planned once and run against each tuple; NULL counts as false.

use std::ffi::CString;

use pgrx::pg_sys;

/// The OR of some row filters, prepared for evaluation, in a memory context of its own that goes
/// with it.
pub struct Prepared {
    cxt: pg_sys::MemoryContext,
    state: *mut pg_sys::ExprState,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared")
    }
}

impl Prepared {
    /// Prepares the OR of `quals` (at least one).
    ///
    /// # Safety
    /// Inside a transaction, with the catalog snapshot the expressions belong to.
    pub unsafe fn new(quals: &[String]) -> Prepared {
        // SAFETY: as the caller guarantees; everything is built in the new context, which lives
        // under TopMemoryContext until this value is dropped.
        unsafe {
            let cxt = pg_sys::AllocSetContextCreateInternal(
                pg_sys::TopMemoryContext,
                c"pgturso row filter".as_ptr(),
                pg_sys::ALLOCSET_SMALL_MINSIZE as usize,
                pg_sys::ALLOCSET_SMALL_INITSIZE as usize,
                pg_sys::ALLOCSET_SMALL_MAXSIZE as usize,
            );
            let prior = pg_sys::MemoryContextSwitchTo(cxt);
            let mut nodes: *mut pg_sys::List = std::ptr::null_mut();
            for q in quals {
                let text = CString::new(q.as_str()).unwrap_or_default();
                let node = pg_sys::stringToNode(text.as_ptr()) as *mut pg_sys::Node;
                nodes = pg_sys::lappend(nodes, node.cast());
            }
            let node = if quals.len() == 1 {
                pg_sys::list_nth(nodes, 0) as *mut pg_sys::Node
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
            pg_sys::MemoryContextSwitchTo(prior);
            Prepared { cxt, state }
        }
    }

    /// Whether `tuple` (with descriptor `tupdesc`) passes. What the evaluation allocates goes to
    /// the current memory context, which the caller resets (the plugin's per-change context).
    ///
    /// # Safety
    /// Inside a decoding callback; `tuple` is a valid heap tuple of `tupdesc`, the row type of
    /// the relation the expressions were written for.
    pub unsafe fn passes(&self, tupdesc: pg_sys::TupleDesc, tuple: pg_sys::HeapTuple) -> bool {
        // SAFETY: as the caller guarantees.
        unsafe {
            let slot = pg_sys::MakeSingleTupleTableSlot(tupdesc, &pg_sys::TTSOpsHeapTuple);
            pg_sys::ExecStoreHeapTuple(tuple, slot, false);
            let econtext = pg_sys::CreateStandaloneExprContext();
            (*econtext).ecxt_scantuple = slot;
            let mut isnull = false;
            // ExecEvalExprSwitchContext, a static inline function of executor.h.
            let prior = pg_sys::MemoryContextSwitchTo((*econtext).ecxt_per_tuple_memory);
            let state = self.state;
            let value = match (*state).evalfunc {
                // An ERROR inside must not unwind through Rust frames unguarded.
                Some(eval) => {
                    pg_sys::ffi::pg_guard_ffi_boundary(|| eval(state, econtext, &mut isnull))
                }
                None => pg_sys::Datum::from(0),
            };
            pg_sys::MemoryContextSwitchTo(prior);
            let passed = !isnull && value.value() != 0;
            pg_sys::FreeExprContext(econtext, true);
            pg_sys::ExecDropSingleTupleTableSlot(slot);
            passed
        }
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        // SAFETY: the context was created in `new`, under TopMemoryContext, and is deleted once.
        unsafe { pg_sys::MemoryContextDelete(self.cxt) }
    }
}
