//! Command handlers, one module per family of commands; `session.rs` holds the
//! state and the dispatch table that routes each decoded command here. FETCH,
//! SEARCH, SORT and THREAD live in their own top-level modules.

mod append;
mod auth;
mod copy_move;
mod list;
mod mailbox;
mod select;
mod status;
mod store;

pub(crate) use list::ListRequest;
pub(crate) use mailbox::mailbox_name;
pub(crate) use select::write_flags_lines;
