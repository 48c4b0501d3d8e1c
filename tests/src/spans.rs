//! A `tracing` subscriber that records every span opened, with its fields,
//! for tests of what the library reports.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, Once};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Subscriber};

/// A span as it was opened, with the fields recorded on it since.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    /// The span's name, e.g. `tenancy.checkout`.
    pub name: String,
    /// Every field given a value, as text.
    pub fields: BTreeMap<String, String>,
}

/// Records spans; clones share the record.
#[derive(Clone, Default)]
pub struct Recorder {
    spans: Arc<Mutex<Vec<SpanRecord>>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Recorder {
    /// Runs `f` with this recorder as the thread's subscriber (and of the
    /// threads the library starts on the caller's behalf).
    pub fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        quiet_global();
        tracing::subscriber::with_default(self.clone(), f)
    }

    /// The spans named `name`, in the order they were opened.
    pub fn named(&self, name: &str) -> Vec<SpanRecord> {
        self.spans.lock().unwrap().iter().filter(|s| s.name == name).cloned().collect()
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = BTreeMap::new();
        span.record(&mut Fields(&mut fields));
        let mut spans = self.spans.lock().unwrap();
        spans.push(SpanRecord { name: span.metadata().name().to_owned(), fields });
        Id::from_u64(spans.len() as u64)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut spans = self.spans.lock().unwrap();
        if let Some(record) = spans.get_mut(span.into_u64() as usize - 1) {
            values.record(&mut Fields(&mut record.fields));
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// A process-wide subscriber that records nothing but keeps every callsite
/// asking, so that a callsite first reached by a test without a recorder is
/// never cached as uninteresting to the recorders of other tests.
fn quiet_global() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = tracing::dispatcher::set_global_default(Dispatch::new(Quiet));
    });
}

struct Quiet;

impl Subscriber for Quiet {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}
