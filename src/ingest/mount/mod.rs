//! The agency API's mount of each domain: for every route of a domain, read the request (the
//! body through `routes::json_body`, the path, the query), build the domain's context from the
//! node, call what the domain's `agency` module exports and answer it. Who may take a step, the
//! step, the body and every refusal are the domain's; nothing here decides.

pub mod corrections;
pub mod evaluation;
pub mod ledger;
pub mod objections;
pub mod repairs;
