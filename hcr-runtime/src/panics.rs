//! Panics in module code, as modules report them to the runtime: recorded
//! for [`Runtime::take_panics`](crate::Runtime::take_panics), for the
//! report of the reload they happened in, and for the report file.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::thread::ThreadId;

use parking_lot::Mutex;

/// How many panics [`Runtime::take_panics`](crate::Runtime::take_panics)
/// keeps until the host takes them; older ones are dropped (and counted).
pub(crate) const QUEUE_CAPACITY: usize = 256;

/// How many panics one reload's report lists.
const CAPTURE_CAPACITY: usize = 64;

/// The longest message kept, in bytes; longer ones are cut (at a character
/// boundary) and end in `…`.
pub(crate) const MAX_MESSAGE: usize = 4096;
/// The longest module, proc and file name kept, in bytes.
pub(crate) const MAX_NAME: usize = 1024;

/// Where a panic in module code was caught.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PanicKind {
    /// In a reloadable Rust function (`#[reload]`): its caller received it
    /// as a `ProcPanic`.
    Proc,
    /// In a reload hook (`#[before_reload]`, `#[after_reload]`,
    /// `#[first_load]`): the hook did not finish; the reload went on.
    Hook,
    /// In a global's migration: the load or reload was rolled back.
    Migration,
    /// In a module's init (a global's initial value, for example): the load
    /// or reload was rolled back.
    Init,
    /// Outside anything hcr catches (on a thread the module started): the
    /// thread unwound on its own, and the module printed the panic.
    Uncaught,
    /// In a host callback ([`Runtime::on_reload`](crate::Runtime::on_reload)):
    /// caught by the runtime; the callback stays registered, the others
    /// ran, and the reload went on. `module` is empty, `name` is
    /// `on_reload`, and the location is unknown (the standard panic hook
    /// printed it).
    HostCallback,
}

/// A panic in module code, as the module reported it.
///
/// ```
/// # use hcr_runtime::{PanicEvent, PanicKind};
/// # fn show(p: &PanicEvent) {
/// // "panic in game::update at src/lib.rs:42:5: index out of bounds ..."
/// println!("{p}");
/// if p.kind == PanicKind::Proc {
///     println!("{} panicked in {}", p.module, p.name);
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PanicEvent {
    /// Where it was caught.
    pub kind: PanicKind,
    /// The module whose code panicked.
    pub module: String,
    /// The proc or hook that panicked, the migration (the name of its
    /// `Migration` static), `init`, or empty for [`PanicKind::Uncaught`].
    pub name: String,
    /// The panic message (cut at 4 KiB).
    pub message: String,
    /// The source file of the panic; empty when unknown.
    pub file: String,
    /// Its line, from 1; 0 when unknown.
    pub line: u32,
    /// Its column, from 1; 0 when unknown.
    pub column: u32,
}

impl PanicEvent {
    /// `file:line:column`, or `None` when the location is unknown.
    pub fn location(&self) -> Option<String> {
        (!self.file.is_empty()).then(|| format!("{}:{}:{}", self.file, self.line, self.column))
    }

    /// What panicked, as the report file's second field says it: the proc
    /// or hook, `<init>`, `<migration NAME>`, or empty.
    pub(crate) fn subject(&self) -> String {
        match self.kind {
            PanicKind::Proc | PanicKind::Hook => self.name.clone(),
            PanicKind::Init => "<init>".into(),
            PanicKind::Migration => format!("<migration {}>", self.name),
            PanicKind::Uncaught => String::new(),
            PanicKind::HostCallback => self.name.clone(),
        }
    }

    /// The report file's line: `panic<TAB>module<TAB>proc<TAB>file:line:col<TAB>message`
    /// (`host` as the module of a host callback).
    pub(crate) fn report_line(&self) -> String {
        let clean = |s: &str| s.replace(['\t', '\r'], " ").replace('\n', " | ");
        format!(
            "panic\t{}\t{}\t{}\t{}",
            clean(if self.kind == PanicKind::HostCallback { "host" } else { &self.module }),
            clean(&self.subject()),
            clean(&self.location().unwrap_or_default()),
            clean(&self.message)
        )
    }
}

impl fmt::Display for PanicEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PanicKind::Proc => write!(f, "panic in {}::{}", self.module, self.name)?,
            PanicKind::Hook => write!(f, "panic in reload hook {}::{}", self.module, self.name)?,
            PanicKind::Migration => write!(f, "panic in migration {}::{}", self.module, self.name)?,
            PanicKind::Init => write!(f, "panic in the init of module `{}`", self.module)?,
            PanicKind::Uncaught => write!(f, "panic in module `{}` outside any reloadable function", self.module)?,
            PanicKind::HostCallback => write!(f, "panic in the host's {} callback", self.name)?,
        }
        if let Some(location) = self.location() {
            write!(f, " at {location}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// One reload's panics: those reported on the thread that runs it.
struct Capture {
    thread: ThreadId,
    events: Vec<PanicEvent>,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<PanicEvent>,
    dropped: u64,
    capture: Option<Capture>,
    /// Proc panics per module since its current build was committed.
    procs: HashMap<String, u64>,
}

/// Every panic modules report, kept for the host.
pub(crate) struct PanicLog {
    inner: Mutex<Inner>,
    report_file: Option<PathBuf>,
}

impl PanicLog {
    pub(crate) fn new(report_file: Option<PathBuf>) -> PanicLog {
        PanicLog { inner: Mutex::new(Inner::default()), report_file }
    }

    /// Records a panic reported on `thread`: for the host's queue, the
    /// reload that `thread` runs (if any), the module's count of proc
    /// panics, the report file and the log.
    pub(crate) fn record(&self, event: PanicEvent, thread: ThreadId) {
        tracing::warn!(kind = ?event.kind, module = %event.module, "{event}");
        if let Some(path) = &self.report_file {
            crate::runtime::append_line(path, &event.report_line());
        }
        let mut inner = self.inner.lock();
        if event.kind == PanicKind::Proc {
            *inner.procs.entry(event.module.clone()).or_default() += 1;
        }
        if let Some(capture) = &mut inner.capture
            && capture.thread == thread
            && capture.events.len() < CAPTURE_CAPACITY
        {
            capture.events.push(event.clone());
        }
        if inner.queue.len() == QUEUE_CAPACITY {
            inner.queue.pop_front();
            inner.dropped += 1;
        }
        inner.queue.push_back(event);
    }

    /// The panics recorded since the last call, oldest first, and how many
    /// older ones were dropped because nobody took them.
    pub(crate) fn take(&self) -> (Vec<PanicEvent>, u64) {
        let mut inner = self.inner.lock();
        let dropped = std::mem::take(&mut inner.dropped);
        (inner.queue.drain(..).collect(), dropped)
    }

    /// Starts collecting the panics reported on the calling thread, for the
    /// report of the reload it runs, until the guard is finished or dropped.
    pub(crate) fn capture(&self) -> CaptureGuard<'_> {
        self.inner.lock().capture = Some(Capture { thread: std::thread::current().id(), events: Vec::new() });
        CaptureGuard(self)
    }

    /// How many panics the running capture holds.
    pub(crate) fn captured(&self) -> usize {
        self.inner.lock().capture.as_ref().map_or(0, |c| c.events.len())
    }

    /// The captured panics from the `from`th on, without ending the capture.
    pub(crate) fn captured_since(&self, from: usize) -> Vec<PanicEvent> {
        self.inner
            .lock()
            .capture
            .as_ref()
            .map(|c| c.events.get(from..).unwrap_or_default().to_vec())
            .unwrap_or_default()
    }

    /// Ends the capture, returning what it collected.
    fn end_capture(&self) -> Vec<PanicEvent> {
        self.inner.lock().capture.take().map(|c| c.events).unwrap_or_default()
    }

    /// The modules whose current build had a proc panic.
    pub(crate) fn panicked_modules(&self) -> Vec<String> {
        let inner = self.inner.lock();
        let mut modules: Vec<String> = inner.procs.iter().filter(|(_, n)| **n > 0).map(|(m, _)| m.clone()).collect();
        modules.sort_unstable();
        modules
    }

    /// Forgets the proc panics of `modules`, whose builds were replaced.
    pub(crate) fn forget(&self, modules: impl IntoIterator<Item = impl AsRef<str>>) {
        let mut inner = self.inner.lock();
        for module in modules {
            inner.procs.remove(module.as_ref());
        }
    }
}

/// A running capture ([`PanicLog::capture`]); dropping it ends it.
pub(crate) struct CaptureGuard<'a>(&'a PanicLog);

impl CaptureGuard<'_> {
    /// Ends the capture, returning what it collected.
    pub(crate) fn finish(self) -> Vec<PanicEvent> {
        let events = self.0.end_capture();
        std::mem::forget(self);
        events
    }
}

impl Drop for CaptureGuard<'_> {
    fn drop(&mut self) {
        self.0.end_capture();
    }
}

/// `text` cut to at most `max` bytes at a character boundary, with `…`
/// appended when it was cut.
pub(crate) fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

/// The message of a panic's payload (`&str` or `String`), or a placeholder.
pub(crate) fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic whose payload is not a string".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: PanicKind, module: &str, name: &str) -> PanicEvent {
        PanicEvent {
            kind,
            module: module.into(),
            name: name.into(),
            message: "boom\tand\nmore".into(),
            file: "src/lib.rs".into(),
            line: 42,
            column: 5,
        }
    }

    #[test]
    fn events_read_like_the_panic_and_fill_one_report_line() {
        let p = event(PanicKind::Proc, "game_logic", "update");
        assert_eq!(p.to_string(), "panic in game_logic::update at src/lib.rs:42:5: boom\tand\nmore");
        assert_eq!(p.report_line(), "panic\tgame_logic\tupdate\tsrc/lib.rs:42:5\tboom and | more");
        let init = PanicEvent { file: String::new(), ..event(PanicKind::Init, "game", "init") };
        assert_eq!(init.report_line(), "panic\tgame\t<init>\t\tboom and | more");
        assert!(init.to_string().starts_with("panic in the init of module `game`: "));
        assert_eq!(event(PanicKind::Migration, "g", "BEST_FROM_V1").subject(), "<migration BEST_FROM_V1>");
        assert_eq!(event(PanicKind::Uncaught, "g", "").subject(), "");
    }

    #[test]
    fn the_queue_is_bounded_and_captures_only_the_reloading_thread() {
        let log = PanicLog::new(None);
        let me = std::thread::current().id();
        let other = std::thread::spawn(|| std::thread::current().id()).join().unwrap();
        let capture = log.capture();
        log.record(event(PanicKind::Init, "a", "init"), me);
        log.record(event(PanicKind::Proc, "b", "f"), other);
        assert_eq!(log.captured(), 1);
        assert_eq!(log.captured_since(0)[0].module, "a");
        assert_eq!(capture.finish().len(), 1);
        assert_eq!(log.captured(), 0, "finished");
        assert_eq!(log.panicked_modules(), ["b"]);
        log.forget(["b"]);
        assert!(log.panicked_modules().is_empty());
        for _ in 0..QUEUE_CAPACITY + 3 {
            log.record(event(PanicKind::Proc, "c", "g"), me);
        }
        let (events, dropped) = log.take();
        assert_eq!((events.len(), dropped), (QUEUE_CAPACITY, 5));
        assert_eq!(log.take(), (Vec::new(), 0));
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("héllo".into(), 2), "h…");
        assert_eq!(truncate("abc".into(), 3), "abc");
    }
}
