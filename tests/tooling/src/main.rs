// The same allocator and settings as the relay's binary (src/main.rs there), so the demo's
// and the benches' in-process relay is measured as it ships.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads this at start-up: purge dirty pages after 1 s, from a background thread so
/// an idle process purges too.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> std::process::ExitCode {
    weibo_relay_tooling::cli::main()
}
