fn main() -> std::process::ExitCode {
    klines::main()
}
