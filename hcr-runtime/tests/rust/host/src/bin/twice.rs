//! A host that chooses its allocator twice: the second choice stops the
//! process before `main`, with a message, rather than let two allocators
//! share the heap.

use std::alloc::System;

static FIRST: System = System;
static SECOND: System = System;

hcr_runtime::abi::global_allocator!(FIRST);
hcr_runtime::abi::global_allocator!(SECOND);

fn main() {
    println!("main ran");
}
