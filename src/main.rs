//! The `storgo` binary: a thin shell over the library's command line.

fn main() -> std::process::ExitCode {
    // Chunks are megabyte buffers allocated on one thread and freed on another; with glibc's
    // default of one malloc arena per thread each arena keeps its own freed buffers, and peak
    // memory grows with the thread count instead of the work in flight.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator tuning; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    storgo::cli::main()
}
