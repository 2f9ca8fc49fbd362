//! Starting a process detached from this one (the background refresh of a stale pack,
//! `crate::hook::refresh`): `fork(2)` and `execve(2)`, the only system calls of that kind
//! in the extension.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;

/// Runs `argv` detached from this process: in a new session, with standard streams on
/// `/dev/null`, no other file descriptor, default signal mask, and as the child of an
/// intermediate process that exits at once (and that this process reaps), so that it is
/// never a child of this process. The environment is this process's, plus
/// `PPYC_DISABLE=1` and `PPYC_AUTO_REFRESH=0` (the refresh needs no hook, and never
/// starts another).
pub(crate) fn spawn_detached(argv: &[&OsStr]) -> std::io::Result<()> {
    let cstr =
        |s: &[u8]| CString::new(s).map_err(|_| std::io::Error::other("a NUL byte in an argument"));
    let args: Vec<CString> = argv
        .iter()
        .map(|a| cstr(a.as_bytes()))
        .collect::<Result<_, _>>()?;
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != "PPYC_DISABLE" && k != "PPYC_AUTO_REFRESH")
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstr(&kv)
        })
        .collect::<Result<_, _>>()?;
    env.push(cstr(b"PPYC_DISABLE=1")?);
    env.push(cstr(b"PPYC_AUTO_REFRESH=0")?);
    let arg_ptrs: Vec<*const libc::c_char> = args
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let env_ptrs: Vec<*const libc::c_char> = env
        .iter()
        .map(|e| e.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let devnull = cstr(b"/dev/null")?;
    // SAFETY: fork(2) in a process that may run other threads: the child calls only
    // async-signal-safe functions (signal-safety(7): setsid, open, dup2, close, the
    // close_range system call, sigprocmask, fork, execve, _exit) on memory prepared before
    // the fork (the CStrings and pointer arrays above stay alive in the parent and are
    // copied into the child), and never returns into Rust or Python code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: the intermediate child, see above: async-signal-safe calls only, then
        // `_exit`, which runs no handlers and flushes nothing of the parent's.
        unsafe {
            libc::setsid();
            let fd = libc::open(devnull.as_ptr(), libc::O_RDWR);
            if fd >= 0 {
                libc::dup2(fd, 0);
                libc::dup2(fd, 1);
                libc::dup2(fd, 2);
            }
            // No descriptor of the importing process (a server's listening socket) may
            // live on in the refresh. close_range(2), Linux 5.9+; else one by one.
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
                for fd in 3..65_536 {
                    libc::close(fd);
                }
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            if libc::fork() == 0 {
                libc::execve(arg_ptrs[0], arg_ptrs.as_ptr(), env_ptrs.as_ptr());
                libc::_exit(127);
            }
            libc::_exit(0);
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waits for the intermediate child created above, which exits at once;
        // `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
    Ok(())
}
