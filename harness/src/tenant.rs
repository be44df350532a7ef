//! Tenants are real OS processes.
//!
//! A check that needs a tenant spawns `hilt tenant` (the same executable, through a hidden
//! subcommand) and drives it with JSON lines: one [`Request`] per line on the tenant's
//! stdin, one [`Response`] per line on its stdout. The tenant opens devices and contexts
//! through the [`crate::accel`] traits, so tenant A and tenant B are as separate as two
//! users' processes are.
//!
//! Every call has a watchdog deadline. A tenant that misses it is killed and the call
//! returns [`TenantError::Hung`]; one that dies returns [`TenantError::Crashed`]; both
//! carry the tail of the tenant's stderr so that the outcome can show what happened.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::accel::{Accelerator, BufferId, Context, DeviceSpec, Kernel, KernelOutput};
use crate::canary::ScanReport;

/// The most bytes one `write` or `read` request moves: transfers are for small patterns
/// and spot checks; bulk work runs as kernels on the device.
pub const MAX_TRANSFER: u64 = 1 << 20;

/// How long a killed tenant (and its stderr) gets to go away before the harness moves on.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// How often a waiting call looks whether the run was asked to stop.
const STOP_POLL: Duration = Duration::from_millis(50);

/// Why waiting for a tenant's line ended without one.
enum Wait {
    /// The watchdog deadline passed.
    Deadline,
    /// The tenant closed its output.
    Closed,
    /// The run was asked to stop.
    Interrupted(crate::interrupt::Signal),
}

/// How much of a tenant's stderr is kept for evidence.
const STDERR_TAIL_BYTES: usize = 4096;

/// One request from the harness to a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Open the device (once per tenant).
    Open {
        /// The device to open.
        device: DeviceSpec,
    },
    /// Create a context; the response carries its index.
    CreateContext,
    /// Destroy a context, freeing what it holds.
    DestroyContext {
        /// The context's index.
        context: usize,
    },
    /// Allocate uninitialised device memory.
    Alloc {
        /// The context's index.
        context: usize,
        /// Bytes.
        bytes: u64,
    },
    /// Free device memory.
    Free {
        /// The context's index.
        context: usize,
        /// The buffer.
        buffer: BufferId,
    },
    /// Write host bytes into a buffer.
    Write {
        /// The context's index.
        context: usize,
        /// The buffer.
        buffer: BufferId,
        /// Byte offset in the buffer.
        offset: u64,
        /// The bytes, as lower-case hex (at most [`MAX_TRANSFER`] bytes).
        hex: String,
    },
    /// Read bytes of a buffer back to the host.
    Read {
        /// The context's index.
        context: usize,
        /// The buffer.
        buffer: BufferId,
        /// Byte offset in the buffer.
        offset: u64,
        /// Bytes to read (at most [`MAX_TRANSFER`]).
        len: u64,
    },
    /// Run a built-in kernel.
    Kernel {
        /// The context's index.
        context: usize,
        /// The kernel.
        kernel: Kernel,
    },
    /// Time an operation inside the tenant, where no protocol overhead is counted:
    /// `warmup` untimed runs, then `repetitions` timed ones.
    Time {
        /// The context's index.
        context: usize,
        /// What to time.
        what: TimedOp,
        /// Untimed runs first (caches, lazy initialisation, clocks ramping up).
        warmup: u32,
        /// Timed runs, 1 to 10,000.
        repetitions: u32,
    },
    /// The raw device address of a buffer, where the backend has one.
    DeviceAddress {
        /// The context's index.
        context: usize,
        /// The buffer.
        buffer: BufferId,
    },
    /// The device memory the context could allocate now, where the device says.
    FreeMemory {
        /// The context's index.
        context: usize,
    },
    /// Free everything and exit.
    Exit,
}

/// An operation a tenant can time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "timed", rename_all = "snake_case")]
pub enum TimedOp {
    /// Write `bytes` of host memory into the start of `buffer`.
    HostToDevice {
        /// The buffer.
        buffer: BufferId,
        /// Bytes per run.
        bytes: u64,
    },
    /// Read `bytes` from the start of `buffer` into host memory.
    DeviceToHost {
        /// The buffer.
        buffer: BufferId,
        /// Bytes per run.
        bytes: u64,
    },
    /// Run a kernel to completion.
    Kernel {
        /// The kernel.
        kernel: Kernel,
    },
}

/// A tenant's answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// The request succeeded.
    Ok(Reply),
    /// The request failed; the message says why.
    Err(String),
}

/// The payload of a successful request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// Nothing to return.
    Done,
    /// A new context's index.
    Context {
        /// Its index.
        context: usize,
    },
    /// A new buffer.
    Buffer {
        /// Its id.
        buffer: BufferId,
    },
    /// Bytes read from a buffer, as lower-case hex.
    Data {
        /// The bytes.
        hex: String,
    },
    /// A kernel's output.
    Kernel {
        /// The output.
        output: KernelOutput,
        /// Seconds the kernel took, timed in the tenant from its launch to its completion
        /// (device time, without the protocol's overhead).
        #[serde(default)]
        seconds: f64,
    },
    /// The seconds each timed run took.
    Times {
        /// One entry per repetition, in order.
        seconds: Vec<f64>,
    },
    /// A buffer's raw device address; `None` where the backend has none.
    Address {
        /// The address.
        address: Option<u64>,
    },
    /// Free device memory, bytes; `None` where the device cannot say.
    Memory {
        /// The bytes.
        free: Option<u64>,
    },
}

/// How the harness starts a tenant: the executable and the arguments that make it one.
#[derive(Debug, Clone)]
pub struct TenantLauncher {
    /// The executable (normally `hilt` itself).
    pub program: PathBuf,
    /// Arguments before nothing else (normally `["tenant"]`).
    pub args: Vec<String>,
    /// The watchdog deadline for every call.
    pub timeout: Duration,
}

/// Why a tenant call did not give an answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TenantError {
    /// The tenant process could not be started.
    #[error("failed to start tenant `{role}` ({program}): {source}")]
    Spawn {
        /// The tenant's role.
        role: String,
        /// The executable.
        program: String,
        /// The error.
        source: std::io::Error,
    },
    /// The tenant missed its watchdog deadline and was killed.
    #[error("tenant `{role}` did not answer `{op}` within {timeout:?} and was killed by its watchdog")]
    Hung {
        /// The tenant's role.
        role: String,
        /// The request it did not answer.
        op: String,
        /// The deadline.
        timeout: Duration,
        /// The end of its stderr.
        stderr_tail: String,
    },
    /// The tenant process ended without answering.
    #[error("tenant `{role}` died during `{op}` ({status})")]
    Crashed {
        /// The tenant's role.
        role: String,
        /// The request it did not answer.
        op: String,
        /// How it ended.
        status: String,
        /// The end of its stderr.
        stderr_tail: String,
    },
    /// The tenant answered with an error: the device refused the request.
    #[error("tenant `{role}`: `{op}` failed: {message}")]
    Device {
        /// The tenant's role.
        role: String,
        /// The request.
        op: String,
        /// What the tenant reported.
        message: String,
    },
    /// The run was asked to stop (SIGINT, SIGTERM) while the call waited: the tenant was
    /// killed, and what it was doing is not evidence of anything.
    #[error("tenant `{role}` was stopped during `{op}`: the run was interrupted by {signal}")]
    Interrupted {
        /// The tenant's role.
        role: String,
        /// The request it was serving.
        op: String,
        /// The signal's name.
        signal: String,
    },
    /// The tenant's answer was not what the protocol allows.
    #[error("tenant `{role}` broke the protocol during `{op}`: {detail}")]
    Protocol {
        /// The tenant's role.
        role: String,
        /// The request.
        op: String,
        /// What was wrong.
        detail: String,
    },
}

impl TenantError {
    /// The end of the tenant's stderr, where the error carries it.
    pub fn stderr_tail(&self) -> Option<&str> {
        match self {
            TenantError::Hung { stderr_tail, .. } | TenantError::Crashed { stderr_tail, .. } => Some(stderr_tail),
            _ => None,
        }
    }
}

/// A running tenant process, seen from the harness.
pub struct Tenant {
    role: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<std::io::Result<String>>,
    stderr: Arc<Mutex<VecDeque<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
    timeout: Duration,
}

impl Tenant {
    /// Starts a tenant process and opens `device` in it.
    pub fn spawn(launcher: &TenantLauncher, role: &str, device: &DeviceSpec) -> Result<Tenant, TenantError> {
        // A run that is stopping starts nothing new.
        if let Some(signal) = crate::interrupt::requested() {
            return Err(TenantError::Interrupted {
                role: role.into(),
                op: "spawn".into(),
                signal: signal.name(),
            });
        }
        let mut command = Command::new(&launcher.program);
        command
            .args(&launcher.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // A tenant must not outlive a harness that was killed: a hung tenant would hold the
        // device forever. PR_SET_PDEATHSIG survives exec and fires when the spawning thread
        // ends, which for a trial is after the tenant has been waited for anyway.
        // Tenants crash on purpose (a faulting kernel on a CPU runtime is a segmentation
        // fault): no core dumps, which would fill a host's crash collector run after run.
        // SAFETY: prctl and setrlimit are async-signal-safe; the closure touches nothing else.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                let no_core = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0
                    && libc::setrlimit(libc::RLIMIT_CORE, &no_core) == 0
                {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let mut child = command.spawn().map_err(|source| TenantError::Spawn {
            role: role.into(),
            program: launcher.program.display().to_string(),
            source,
        })?;
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_reader = child.stderr.take().map(|mut pipe| {
            let tail = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = pipe.read(&mut buf) {
                    let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                    t.extend(&buf[..n]);
                    let excess = t.len().saturating_sub(STDERR_TAIL_BYTES);
                    t.drain(..excess);
                }
            })
        });
        let mut tenant = Tenant {
            role: role.into(),
            child,
            stdin,
            lines,
            stderr,
            stderr_reader,
            timeout: launcher.timeout,
        };
        tenant.call(&Request::Open { device: device.clone() })?;
        Ok(tenant)
    }

    /// The tenant's role (`A`, `B`, ...).
    pub fn role(&self) -> &str {
        &self.role
    }

    /// The tenant's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one request and waits, up to the watchdog deadline, for its answer.
    pub fn call(&mut self, request: &Request) -> Result<Reply, TenantError> {
        let op = op_name(request);
        let line = serde_json::to_string(request).map_err(|e| self.protocol(op, e.to_string()))?;
        let sent = self
            .stdin
            .as_mut()
            .map(|s| writeln!(s, "{line}").and_then(|()| s.flush()))
            .unwrap_or_else(|| Err(std::io::ErrorKind::BrokenPipe.into()));
        if sent.is_err() {
            return Err(self.crashed(op));
        }
        match self.receive() {
            Err(Wait::Interrupted(signal)) => {
                self.kill();
                Err(TenantError::Interrupted {
                    role: self.role.clone(),
                    op: op.into(),
                    signal: signal.name(),
                })
            }
            Ok(Ok(line)) => match serde_json::from_str::<Response>(&line) {
                Ok(Response::Ok(reply)) => Ok(reply),
                Ok(Response::Err(message)) => Err(TenantError::Device {
                    role: self.role.clone(),
                    op: op.into(),
                    message,
                }),
                Err(e) => Err(self.protocol(op, format!("{e}: {line:.200}"))),
            },
            Ok(Err(e)) => Err(self.protocol(op, e.to_string())),
            Err(Wait::Closed) => match crate::interrupt::requested() {
                // Ctrl-C reaches the tenants too (they share the terminal's process group):
                // a tenant that died of it did not crash.
                Some(signal) => {
                    self.kill();
                    Err(TenantError::Interrupted {
                        role: self.role.clone(),
                        op: op.into(),
                        signal: signal.name(),
                    })
                }
                None => Err(self.crashed(op)),
            },
            Err(Wait::Deadline) => {
                self.kill();
                Err(TenantError::Hung {
                    role: self.role.clone(),
                    op: op.into(),
                    timeout: self.timeout,
                    stderr_tail: self.stderr_tail(),
                })
            }
        }
    }

    /// Waits for the tenant's next line until the watchdog deadline, looking every
    /// [`STOP_POLL`] whether the run was asked to stop.
    fn receive(&mut self) -> Result<std::io::Result<String>, Wait> {
        let deadline = std::time::Instant::now() + self.timeout;
        loop {
            if let Some(signal) = crate::interrupt::requested() {
                return Err(Wait::Interrupted(signal));
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(Wait::Deadline);
            }
            match self.lines.recv_timeout(left.min(STOP_POLL)) {
                Ok(line) => return Ok(line),
                Err(RecvTimeoutError::Disconnected) => return Err(Wait::Closed),
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Creates a context; returns its index.
    pub fn create_context(&mut self) -> Result<usize, TenantError> {
        match self.call(&Request::CreateContext)? {
            Reply::Context { context } => Ok(context),
            other => Err(self.unexpected("create_context", &other)),
        }
    }

    /// Allocates uninitialised memory in a context.
    pub fn alloc(&mut self, context: usize, bytes: u64) -> Result<BufferId, TenantError> {
        match self.call(&Request::Alloc { context, bytes })? {
            Reply::Buffer { buffer } => Ok(buffer),
            other => Err(self.unexpected("alloc", &other)),
        }
    }

    /// Frees a buffer.
    pub fn free(&mut self, context: usize, buffer: BufferId) -> Result<(), TenantError> {
        self.call(&Request::Free { context, buffer }).map(drop)
    }

    /// Destroys a context.
    pub fn destroy_context(&mut self, context: usize) -> Result<(), TenantError> {
        self.call(&Request::DestroyContext { context }).map(drop)
    }

    /// Writes host bytes into a buffer.
    pub fn write(&mut self, context: usize, buffer: BufferId, offset: u64, data: &[u8]) -> Result<(), TenantError> {
        let hex = crate::hex(data);
        self.call(&Request::Write {
            context,
            buffer,
            offset,
            hex,
        })
        .map(drop)
    }

    /// Reads `len` bytes of a buffer.
    pub fn read(&mut self, context: usize, buffer: BufferId, offset: u64, len: u64) -> Result<Vec<u8>, TenantError> {
        match self.call(&Request::Read {
            context,
            buffer,
            offset,
            len,
        })? {
            Reply::Data { hex } => unhex(&hex).ok_or_else(|| self.protocol("read", "reply is not hex".into())),
            other => Err(self.unexpected("read", &other)),
        }
    }

    /// Runs a kernel and returns its output.
    pub fn kernel(&mut self, context: usize, kernel: Kernel) -> Result<KernelOutput, TenantError> {
        self.kernel_timed(context, kernel).map(|(output, _)| output)
    }

    /// Runs a kernel and returns its output and the seconds it took in the tenant.
    pub fn kernel_timed(&mut self, context: usize, kernel: Kernel) -> Result<(KernelOutput, f64), TenantError> {
        match self.call(&Request::Kernel { context, kernel })? {
            Reply::Kernel { output, seconds } => Ok((output, seconds)),
            other => Err(self.unexpected("kernel", &other)),
        }
    }

    /// Device memory the context could allocate now; `None` where the device cannot say.
    pub fn free_memory(&mut self, context: usize) -> Result<Option<u64>, TenantError> {
        match self.call(&Request::FreeMemory { context })? {
            Reply::Memory { free } => Ok(free),
            other => Err(self.unexpected("free_memory", &other)),
        }
    }

    /// Times `op` inside the tenant: `warmup` untimed runs, then `repetitions` timed ones.
    pub fn time(
        &mut self,
        context: usize,
        op: TimedOp,
        warmup: u32,
        repetitions: u32,
    ) -> Result<Vec<f64>, TenantError> {
        match self.call(&Request::Time {
            context,
            what: op,
            warmup,
            repetitions,
        })? {
            Reply::Times { seconds } if seconds.len() == repetitions as usize => Ok(seconds),
            other => Err(self.unexpected("time", &other)),
        }
    }

    /// The raw device address of a buffer; `None` where the backend has none.
    pub fn device_address(&mut self, context: usize, buffer: BufferId) -> Result<Option<u64>, TenantError> {
        match self.call(&Request::DeviceAddress { context, buffer })? {
            Reply::Address { address } => Ok(address),
            other => Err(self.unexpected("device_address", &other)),
        }
    }

    /// Runs a kernel that must return a canary scan.
    pub fn scan(&mut self, context: usize, kernel: Kernel) -> Result<ScanReport, TenantError> {
        self.scan_timed(context, kernel).map(|(report, _)| report)
    }

    /// Runs a kernel that must return a canary scan; the scan and the seconds it took.
    pub fn scan_timed(&mut self, context: usize, kernel: Kernel) -> Result<(ScanReport, f64), TenantError> {
        match self.kernel_timed(context, kernel)? {
            (KernelOutput::Scan(report), seconds) => Ok((report, seconds)),
            (other, _) => Err(self.protocol("kernel", format!("expected a scan, got {other:?}"))),
        }
    }

    /// Asks the tenant to exit and waits for it, within the watchdog deadline.
    pub fn exit(mut self) -> Result<(), TenantError> {
        self.call(&Request::Exit)?;
        drop(self.stdin.take());
        let start = std::time::Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(_)) | Err(_) => return Err(self.crashed("exit")),
                Ok(None) if let Some(signal) = crate::interrupt::requested() => {
                    self.kill();
                    return Err(TenantError::Interrupted {
                        role: self.role.clone(),
                        op: "exit".into(),
                        signal: signal.name(),
                    });
                }
                Ok(None) if start.elapsed() > self.timeout => {
                    self.kill();
                    return Err(TenantError::Hung {
                        role: self.role.clone(),
                        op: "exit".into(),
                        timeout: self.timeout,
                        stderr_tail: self.stderr_tail(),
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// Kills the tenant and reaps it, waiting a bounded time: a process stuck in a driver
    /// call may not die at once, and the harness must not hang with it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let start = std::time::Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) && start.elapsed() < KILL_GRACE {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn stderr_tail(&mut self) -> String {
        // The process is gone or killed; let the reader drain what is left, for a bounded
        // time (a surviving grandchild could hold the pipe open).
        let start = std::time::Instant::now();
        while self.stderr_reader.as_ref().is_some_and(|r| !r.is_finished()) && start.elapsed() < KILL_GRACE {
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(reader) = self.stderr_reader.take_if(|r| r.is_finished()) {
            let _ = reader.join();
        }
        let t = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&t.iter().copied().collect::<Vec<u8>>())
            .trim_end()
            .to_string()
    }

    fn crashed(&mut self, op: &str) -> TenantError {
        // The tenant closed its end; give it a moment to exit, then make sure it has.
        let start = std::time::Instant::now();
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break describe_status(s),
                Ok(None) if start.elapsed() < Duration::from_secs(2) => std::thread::sleep(Duration::from_millis(5)),
                Ok(None) => {
                    self.kill();
                    break "closed its output and was killed".to_string();
                }
                Err(e) => break format!("status unknown: {e}"),
            }
        };
        TenantError::Crashed {
            role: self.role.clone(),
            op: op.into(),
            status,
            stderr_tail: self.stderr_tail(),
        }
    }

    fn protocol(&self, op: &str, detail: String) -> TenantError {
        TenantError::Protocol {
            role: self.role.clone(),
            op: op.into(),
            detail,
        }
    }

    fn unexpected(&self, op: &str, reply: &Reply) -> TenantError {
        self.protocol(op, format!("unexpected reply {reply:?}"))
    }
}

impl Drop for Tenant {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => status.to_string(),
    }
}

fn op_name(request: &Request) -> &'static str {
    match request {
        Request::Open { .. } => "open",
        Request::CreateContext => "create_context",
        Request::DestroyContext { .. } => "destroy_context",
        Request::Alloc { .. } => "alloc",
        Request::Free { .. } => "free",
        Request::Write { .. } => "write",
        Request::Read { .. } => "read",
        Request::Kernel { .. } => "kernel",
        Request::Time { .. } => "time",
        Request::DeviceAddress { .. } => "device_address",
        Request::FreeMemory { .. } => "free_memory",
        Request::Exit => "exit",
    }
}

/// The tenant side: serves requests from `input` until `exit` or end of input.
///
/// This is what `hilt tenant` runs. Device errors become `err` responses; only a broken
/// stdout ends the loop early.
pub fn serve(input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
    let mut state = TenantState::default();
    for line in input.split(b'\n') {
        let line = line?;
        if line.trim_ascii().is_empty() {
            continue;
        }
        let (response, exit) = match serde_json::from_slice::<Request>(&line) {
            Ok(Request::Exit) => {
                state.contexts.clear();
                (Response::Ok(Reply::Done), true)
            }
            Ok(request) => (state.handle(request).map_or_else(Response::Err, Response::Ok), false),
            Err(e) => (Response::Err(format!("malformed request: {e}")), false),
        };
        let text = serde_json::to_string(&response).map_err(std::io::Error::other)?;
        writeln!(output, "{text}")?;
        output.flush()?;
        if exit {
            break;
        }
    }
    Ok(())
}

#[derive(Default)]
struct TenantState {
    device: Option<Box<dyn Accelerator>>,
    contexts: Vec<Option<Box<dyn Context>>>,
}

impl TenantState {
    fn handle(&mut self, request: Request) -> Result<Reply, String> {
        match request {
            Request::Open { device } => {
                if self.device.is_some() {
                    return Err("device already open".into());
                }
                self.device = Some(device.open().map_err(|e| e.to_string())?);
                Ok(Reply::Done)
            }
            Request::CreateContext => {
                let device = self.device.as_ref().ok_or("no device open")?;
                self.contexts
                    .push(Some(device.create_context().map_err(|e| e.to_string())?));
                Ok(Reply::Context {
                    context: self.contexts.len() - 1,
                })
            }
            Request::DestroyContext { context } => {
                self.context(context)?;
                self.contexts[context] = None;
                Ok(Reply::Done)
            }
            Request::Alloc { context, bytes } => {
                let buffer = self.context(context)?.alloc(bytes).map_err(|e| e.to_string())?;
                Ok(Reply::Buffer { buffer })
            }
            Request::Free { context, buffer } => {
                self.context(context)?.free(buffer).map_err(|e| e.to_string())?;
                Ok(Reply::Done)
            }
            Request::Write {
                context,
                buffer,
                offset,
                hex,
            } => {
                let data = unhex(&hex).ok_or("`hex` is not an even-length hex string")?;
                if data.len() as u64 > MAX_TRANSFER {
                    return Err(format!("a write moves at most {MAX_TRANSFER} bytes"));
                }
                self.context(context)?
                    .write(buffer, offset, &data)
                    .map_err(|e| e.to_string())?;
                Ok(Reply::Done)
            }
            Request::Read {
                context,
                buffer,
                offset,
                len,
            } => {
                if len > MAX_TRANSFER {
                    return Err(format!("a read moves at most {MAX_TRANSFER} bytes"));
                }
                let mut data = vec![0u8; len as usize];
                self.context(context)?
                    .read(buffer, offset, &mut data)
                    .map_err(|e| e.to_string())?;
                Ok(Reply::Data { hex: crate::hex(&data) })
            }
            Request::Kernel { context, kernel } => {
                let ctx = self.context(context)?;
                let start = std::time::Instant::now();
                let output = ctx.run(&kernel).map_err(|e| e.to_string())?;
                Ok(Reply::Kernel {
                    output,
                    seconds: start.elapsed().as_secs_f64(),
                })
            }
            Request::Time {
                context,
                what: op,
                warmup,
                repetitions,
            } => {
                if !(1..=10_000).contains(&repetitions) || warmup > 10_000 {
                    return Err("`repetitions` must be 1 to 10000 and `warmup` at most 10000".into());
                }
                let ctx = self.context(context)?;
                let bytes = match op {
                    TimedOp::HostToDevice { bytes, .. } | TimedOp::DeviceToHost { bytes, .. } => bytes,
                    TimedOp::Kernel { .. } => 0,
                };
                let len = usize::try_from(bytes).map_err(|_| format!("{bytes} bytes do not fit in host memory"))?;
                let mut host = vec![0x5au8; len];
                let mut once = |ctx: &mut Box<dyn Context>| -> Result<(), String> {
                    match &op {
                        TimedOp::HostToDevice { buffer, .. } => ctx.write(*buffer, 0, &host),
                        TimedOp::DeviceToHost { buffer, .. } => ctx.read(*buffer, 0, &mut host),
                        TimedOp::Kernel { kernel } => ctx.run(kernel).map(drop),
                    }
                    .map_err(|e| e.to_string())
                };
                for _ in 0..warmup {
                    once(ctx)?;
                }
                let mut seconds = Vec::with_capacity(repetitions as usize);
                for _ in 0..repetitions {
                    let start = std::time::Instant::now();
                    once(ctx)?;
                    let host = start.elapsed().as_secs_f64();
                    // The device's own clock, where the backend has one for this operation.
                    seconds.push(ctx.device_seconds().unwrap_or(host));
                }
                Ok(Reply::Times { seconds })
            }
            Request::DeviceAddress { context, buffer } => {
                let address = self
                    .context(context)?
                    .device_address(buffer)
                    .map_err(|e| e.to_string())?;
                Ok(Reply::Address { address })
            }
            Request::FreeMemory { context } => {
                let free = self.context(context)?.free_memory().map_err(|e| e.to_string())?;
                Ok(Reply::Memory { free })
            }
            Request::Exit => Ok(Reply::Done),
        }
    }

    fn context(&mut self, index: usize) -> Result<&mut Box<dyn Context>, String> {
        self.contexts
            .get_mut(index)
            .and_then(Option::as_mut)
            .ok_or_else(|| format!("no context {index}"))
    }
}

/// Decodes lower-case or upper-case hex; `None` for anything else.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| text.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_lines(lines: &[&str]) -> Vec<Response> {
        let input = lines.join("\n");
        let mut out = Vec::new();
        serve(input.as_bytes(), &mut out).expect("serve");
        String::from_utf8(out)
            .expect("utf8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("response"))
            .collect()
    }

    #[test]
    fn malformed_and_out_of_order_requests_get_errors_not_panics() {
        let r = serve_lines(&[
            "{not json",
            r#"{"op":"create_context"}"#,
            r#"{"op":"alloc","context":3,"bytes":1}"#,
        ]);
        assert!(matches!(&r[0], Response::Err(m) if m.starts_with("malformed request")));
        assert_eq!(r[1], Response::Err("no device open".into()));
        assert_eq!(r[2], Response::Err("no context 3".into()));
    }

    #[test]
    fn bytes_that_are_not_utf8_get_an_error_and_the_tenant_goes_on() {
        let mut out = Vec::new();
        serve(&b"\xff\xfe\n{\"op\":\"create_context\"}\n"[..], &mut out).expect("serve");
        let text = String::from_utf8(out).expect("utf8");
        let r: Vec<Response> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("response"))
            .collect();
        assert!(matches!(&r[0], Response::Err(m) if m.starts_with("malformed request")));
        assert_eq!(r[1], Response::Err("no device open".into()));
    }

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        assert_eq!(unhex(&crate::hex(&[0, 1, 0xab, 0xff])), Some(vec![0, 1, 0xab, 0xff]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é1"), None);
    }

    #[test]
    fn a_tenant_drives_a_sim_device_over_json_lines() {
        use crate::accel::sim::{self, SimKnobs, SimSpec};
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = SimSpec {
            id: "sim0".into(),
            path: dir.path().join("dev"),
            knobs: SimKnobs {
                memory_mib: 1,
                ..SimKnobs::default()
            },
        };
        sim::create(&spec).expect("create");
        let open = serde_json::to_string(&Request::Open {
            device: DeviceSpec::Sim(spec),
        })
        .expect("json");
        let fill = r#"{"op":"kernel","context":0,"kernel":{"kernel":"fill_canary","buffer":1,"key":7}}"#;
        let count = r#"{"op":"kernel","context":0,"kernel":{"kernel":"count_canary","buffer":1,"key":7}}"#;
        let r = serve_lines(&[
            &open,
            r#"{"op":"create_context"}"#,
            r#"{"op":"alloc","context":0,"bytes":4096}"#,
            fill,
            count,
            r#"{"op":"write","context":0,"buffer":1,"offset":4094,"hex":"c0ffee"}"#,
            r#"{"op":"write","context":0,"buffer":1,"offset":4090,"hex":"c0ff"}"#,
            r#"{"op":"read","context":0,"buffer":1,"offset":4090,"len":2}"#,
            r#"{"op":"exit"}"#,
            r#"{"op":"create_context"}"#,
        ]);
        assert_eq!(r.len(), 9, "nothing is served after exit");
        assert!(
            matches!(&r[5], Response::Err(m) if m.contains("outside buffer")),
            "{:?}",
            r[5]
        );
        assert_eq!(r[7], Response::Ok(Reply::Data { hex: "c0ff".into() }));
        assert_eq!(r[2], Response::Ok(Reply::Buffer { buffer: BufferId(1) }));
        let Response::Ok(Reply::Kernel {
            output: KernelOutput::Scan(scan),
            ..
        }) = &r[4]
        else {
            panic!("expected a scan, got {:?}", r[4]);
        };
        assert_eq!(scan.blocks, 128);
    }
}
