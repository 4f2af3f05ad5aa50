// jemalloc hands freed memory back to the system within a second (its background thread and
// decay settings below), so a burst of large bodies, such as a slow-client flood, does not
// leave the process at its peak; glibc kept about 17 MiB of it, fragmented, for good. An
// allocator and its configuration can only be statics.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads this at start-up: purge dirty pages after 1 s, from a background thread so
/// an idle process purges too.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> std::process::ExitCode {
    weibo_relay::cli::main()
}
