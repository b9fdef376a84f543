//! The report as data: what `report.json` holds and `tools compare` reads back. Every section that
//! a trace may lack (time, cost, accounting) is an `Option` or an empty list, so a v1 report and a
//! v2 report have the same shape.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The version of this JSON shape; `compare` refuses another.
pub const REPORT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub report_version: u32,
    /// The trace the report was made from, as given.
    pub trace: String,
    pub scenario: Option<String>,
    pub trace_version: u32,
    pub records: u64,
    /// Counter ticks per second, when the trace says (v2).
    pub counter_hz: Option<u64>,
    /// Seconds from the first record to the last, when the trace has time.
    pub duration_s: Option<f64>,
    /// Per VM, in id order.
    pub vms: Vec<VmRow>,
    /// How faults ended, over all VMs: a case name for a resolved fault (`2B-zero`), else the outcome
    /// (`abort`, `mmio`, `Restart`, …).
    pub cases: BTreeMap<String, u64>,
    pub timeline: Timeline,
    /// Fault cost (trap entry to ERET), when the trace has it (v2).
    pub latency: Option<Latency>,
    /// Resident/shared/swapped pages over time, per VM, from accounting records (empty without them).
    pub memory: Vec<MemorySeries>,
    /// Frames saved over time: (seconds, pages merged so far) at each dedup pass (empty without
    /// dedup-pass events).
    pub savings: Vec<(f64, u64)>,
    /// Frames saved by sharing, by cause, at each accounting pass (savings records, `vm::account`;
    /// empty in traces without them).
    #[serde(default)]
    pub sharing: Vec<SharingPoint>,
    /// Event counts over time (dedup passes, page-outs/ins, VM start/stop …; empty without them).
    pub events: Vec<EventCount>,
    /// MMIO accesses per VM, device register and direction, summed over the run (empty without
    /// MMIO aggregate records).
    pub mmio: Vec<MmioRow>,
    /// MMIO accesses (all VMs) per timeline bucket (empty without MMIO aggregate records).
    pub mmio_buckets: Vec<u64>,
    /// The hypervisor's end-of-run counters (totals column), from the run's `console.log`.
    pub counters: BTreeMap<String, u64>,
    pub headline: Headline,
    /// What the trace could not tell, one sentence each (said in the Markdown too).
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VmRow {
    pub id: u16,
    pub name: String,
    pub records: u64,
    /// Faults the engine resolved.
    pub resolved: u64,
    /// Pages those faults mapped: the faulting page plus its neighbours.
    pub pages_mapped: u64,
    pub cases: BTreeMap<String, u64>,
}

/// What the timeline's x axis counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Axis {
    /// Seconds since the first record (v2 traces).
    Seconds,
    /// Global record sequence numbers (v1 traces have no time).
    Seq,
}

impl Axis {
    /// One bucket of `width` in words: `0.005 s`, `500 records`.
    pub fn bucket(self, width: f64) -> String {
        match self {
            Axis::Seconds => format!("{width} s"),
            Axis::Seq => format!("{width} records (by sequence number)"),
        }
    }

    /// The unit in a table's heading.
    pub fn unit(self) -> &'static str {
        match self {
            Axis::Seconds => "s",
            Axis::Seq => "seq",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Axis::Seconds => "time (s)",
            Axis::Seq => "record sequence number",
        }
    }
}

/// Records per VM in equal buckets of the axis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub axis: Axis,
    /// Width of one bucket, in axis units.
    pub width: f64,
    /// Per bucket, per VM (in [`Report::vms`] order): records that fell in it.
    pub buckets: Vec<Vec<u64>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ns: f64,
    pub p90_ns: f64,
    pub p99_ns: f64,
    pub max_ns: f64,
    pub mean_ns: f64,
    /// Power-of-two buckets: `[lo_ns, hi_ns)` and how many faults cost that much.
    pub histogram: Vec<(f64, f64, u64)>,
    /// The CDF at every percentile 1..=100: (ns, fraction of faults at or below).
    pub cdf: Vec<(f64, f64)>,
    /// p50/p99 per case (resolved faults only).
    pub by_case: Vec<CaseLatency>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseLatency {
    pub case: String,
    pub count: u64,
    pub p50_ns: f64,
    pub p99_ns: f64,
}

/// One VM's accounting samples in time order: seconds, and pages of each kind at that time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SharingPoint {
    pub t_s: f64,
    pub clone: u64,
    pub image: u64,
    pub dedup: u64,
    /// Frames the VMs reach (each once).
    pub distinct: u64,
    /// Σ over the VMs of their resident pages: `distinct` + the three savings.
    pub resident_sum: u64,
    pub pool_used: u64,
    pub pool_free: u64,
}

impl SharingPoint {
    /// Every cause together.
    pub fn saved(&self) -> u64 {
        self.clone + self.image + self.dedup
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemorySeries {
    pub vm: u16,
    pub name: String,
    pub t_s: Vec<f64>,
    pub resident: Vec<u64>,
    pub private: Vec<u64>,
    pub shared: Vec<u64>,
    pub zero: Vec<u64>,
    pub swapped: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventCount {
    pub kind: String,
    pub count: u64,
    /// Per timeline bucket.
    pub buckets: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MmioRow {
    pub vm: u16,
    /// IPA of the device window.
    pub base: u64,
    /// The register's offset in it.
    pub offset: u32,
    /// `read` or `write`.
    pub direction: String,
    pub count: u64,
}

/// The numbers `tools compare` puts side by side.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Headline {
    pub records: u64,
    pub resolved: u64,
    pub pages_mapped: u64,
    /// Seconds by which 99 % of the resolved faults had been taken (needs time).
    pub faults_99_s: Option<f64>,
    pub p99_ns: Option<f64>,
    /// Frames the dedup passes saved: the pages they merged (needs dedup-pass events).
    pub frames_saved: Option<u64>,
    /// The fewest free page-pool frames any accounting record saw (needs accounting records).
    pub pool_free_min: Option<u64>,
    /// Pages read back from swap (the counters table, or page-in events).
    pub page_ins: Option<u64>,
}
