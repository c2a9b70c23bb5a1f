//! One run of the klines binary, measured: wall time, CPU time and peak memory of that child
//! alone (shared by the benchmarks).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// Runs the klines binary and returns (wall s, CPU s, peak RSS bytes) of that child alone.
/// `KLINES_BENCH_BIN` names another build to run instead (an earlier release, for a before and
/// after on the same machine).
#[allow(dead_code)] // not every benchmark runs the binary
pub fn run(dir: &Path, args: &[&str]) -> (f64, f64, u64, String) {
    match std::env::var_os("KLINES_BENCH_BIN") {
        Some(bin) => run_program(Path::new(&bin), dir, args),
        None => run_program(Path::new(env!("CARGO_BIN_EXE_klines")), dir, args),
    }
}

/// Runs `program` (klines, or the peer a benchmark compares it with) the same way.
#[allow(dead_code)]
pub fn run_program(program: &Path, dir: &Path, args: &[&str]) -> (f64, f64, u64, String) {
    let started = Instant::now();
    // For profiling: KLINES_BENCH_WRAPPER="strace -c -f -o /tmp/syscalls" runs the child under
    // that command (its times then include the wrapper's).
    let wrapper = std::env::var("KLINES_BENCH_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    let mut command = match words.next() {
        Some(w) => {
            let mut c = Command::new(w);
            c.args(words).arg(program);
            c
        }
        None => Command::new(program),
    };
    let mut child = command
        .args(args)
        .current_dir(dir)
        .env("KLINES_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    // Peak memory: the child's VmHWM, polled. (wait4's ru_maxrss would not do: Linux carries
    // the high-water mark of the forking process's memory over the exec, so a child of this
    // benchmark, which holds its bodies in memory, would start at the benchmark's size.)
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hwm = {
        let done = std::sync::Arc::clone(&done);
        std::thread::spawn(move || {
            let mut peak = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    for line in status.lines() {
                        if let Some(kb) = line.strip_prefix("VmHWM:") {
                            let kb: u64 =
                                kb.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                            peak = peak.max(kb * 1024);
                        }
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            peak
        })
    };
    let mut status = 0;
    // SAFETY: wait4 on our own child, with a zeroed rusage to fill.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(pid, &mut status, 0, &mut u) };
    let wall = started.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = hwm.join().unwrap();
    let mut out = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{} failed: {out}",
        program.display()
    );
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        wall,
        secs(u.ru_utime) + secs(u.ru_stime),
        peak,
        out.trim().to_string(),
    )
}
