fn main() -> std::process::ExitCode {
    weibo_relay::cli::main()
}
