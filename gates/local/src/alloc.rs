//! Bookkeeping of what running attempts hold: CPU slots (pinned to host CPU
//! ids), GPU ids and memory.

use gantry_gate::Resources;
use serde::{Deserialize, Serialize};

/// A set of numbered slots, each free or taken.
#[derive(Debug, Clone)]
pub struct Slots {
    taken: Vec<bool>,
    free: usize,
}

impl Slots {
    /// `n` free slots.
    pub fn new(n: usize) -> Self {
        Self {
            taken: vec![false; n],
            free: n,
        }
    }

    /// How many slots are free.
    pub fn free(&self) -> usize {
        self.free
    }

    /// How many slots there are.
    pub fn len(&self) -> usize {
        self.taken.len()
    }

    /// Take `k` free slots (lowest first), or none when fewer are free.
    pub fn take(&mut self, k: usize) -> Option<Vec<u32>> {
        if k > self.free {
            return None;
        }
        let ids: Vec<u32> = (0..self.taken.len())
            .filter(|&i| !self.taken[i])
            .take(k)
            .map(|i| i as u32)
            .collect();
        self.mark(&ids);
        Some(ids)
    }

    /// Mark `ids` taken (when recovering running attempts); unknown or
    /// already taken ids are ignored.
    pub fn mark(&mut self, ids: &[u32]) {
        for &id in ids {
            if let Some(slot) = self.taken.get_mut(id as usize).filter(|t| !**t) {
                *slot = true;
                self.free -= 1;
            }
        }
    }

    /// Free `ids`.
    pub fn put(&mut self, ids: &[u32]) {
        for &id in ids {
            if let Some(slot) = self.taken.get_mut(id as usize).filter(|t| **t) {
                *slot = false;
                self.free += 1;
            }
        }
    }
}

/// What one attempt holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alloc {
    /// CPU slots; slot `s` is pinned to host CPU `cpu_ids[s % cpu_ids.len()]`.
    pub cpu_slots: Vec<u32>,
    /// GPU ids (`/dev/nvidia<id>`).
    pub gpus: Vec<u32>,
    /// Memory in bytes (accounted, not enforced).
    pub memory_bytes: u64,
}

impl Alloc {
    /// Its shape: a queued attempt takes over only a slot of its own shape
    /// ([`shape_of`]).
    pub fn shape(&self) -> String {
        shape(self.cpu_slots.len(), self.gpus.len(), self.memory_bytes)
    }
}

/// The shape of what a job asks, as [`Alloc::shape`] names what one holds.
pub fn shape_of(want: Resources) -> String {
    shape(
        want.cpus.max(1) as usize,
        want.gpus as usize,
        want.memory_bytes,
    )
}

fn shape(cpus: usize, gpus: usize, memory_bytes: u64) -> String {
    format!("{cpus} cpus, {gpus} gpus, {memory_bytes} bytes")
}

/// Why a job does not fit.
#[derive(Debug, PartialEq, Eq)]
pub enum NoFit {
    /// It asks more than the whole partition has: it can never run here.
    Never(String),
    /// It asks more than is free now.
    NotNow(String),
}

/// The capacity of the one partition and what is taken of it.
#[derive(Debug)]
pub struct Pool {
    cpus: Slots,
    gpus: Slots,
    memory_total: u64,
    memory_used: u64,
}

impl Pool {
    /// A pool of `cpus` CPU slots, `gpus` GPUs and `memory` bytes.
    pub fn new(cpus: u32, gpus: u32, memory: u64) -> Self {
        Self {
            cpus: Slots::new(cpus as usize),
            gpus: Slots::new(gpus as usize),
            memory_total: memory,
            memory_used: 0,
        }
    }

    /// `NoFit::Never` when `want` exceeds the whole pool.
    pub fn check_shape(&self, want: Resources) -> Result<(), NoFit> {
        let cpus = want.cpus.max(1) as usize;
        let gpus = want.gpus as usize;
        let memory = want.memory_bytes;
        if cpus > self.cpus.len() || gpus > self.gpus.len() || memory > self.memory_total {
            return Err(NoFit::Never(format!(
                "the job asks {cpus} cpus, {} memory, {gpus} gpus; this host's partition has only {} cpus, {} memory, {} gpus",
                human_bytes(memory),
                self.cpus.len(),
                human_bytes(self.memory_total),
                self.gpus.len()
            )));
        }
        Ok(())
    }

    /// Reserve what `want` asks (at least one CPU).
    pub fn allocate(&mut self, want: Resources) -> Result<Alloc, NoFit> {
        self.check_shape(want)?;
        let cpus = want.cpus.max(1) as usize;
        let gpus = want.gpus as usize;
        let memory = want.memory_bytes;
        let asks = format!(
            "the job asks {cpus} cpus, {} memory, {gpus} gpus",
            human_bytes(memory)
        );
        let memory_free = self.memory_total - self.memory_used;
        if cpus > self.cpus.free() || gpus > self.gpus.free() || memory > memory_free {
            return Err(NoFit::NotNow(format!(
                "{asks}; free now: {} cpus, {} memory, {} gpus",
                self.cpus.free(),
                human_bytes(memory_free),
                self.gpus.free()
            )));
        }
        let alloc = Alloc {
            cpu_slots: self.cpus.take(cpus).expect("checked free"),
            gpus: self.gpus.take(gpus).expect("checked free"),
            memory_bytes: memory,
        };
        self.memory_used += memory;
        Ok(alloc)
    }

    /// Hold `alloc` again (a running attempt found at start).
    pub fn restore(&mut self, alloc: &Alloc) {
        self.cpus.mark(&alloc.cpu_slots);
        self.gpus.mark(&alloc.gpus);
        self.memory_used = (self.memory_used + alloc.memory_bytes).min(self.memory_total);
    }

    /// CPU slots free now.
    #[cfg(test)]
    pub fn free_cpus(&self) -> usize {
        self.cpus.free()
    }

    /// Free everything (before restoring what the running attempts hold).
    pub fn clear(&mut self) {
        self.cpus = Slots::new(self.cpus.len());
        self.gpus = Slots::new(self.gpus.len());
        self.memory_used = 0;
    }

    /// Give `alloc` back.
    pub fn release(&mut self, alloc: &Alloc) {
        self.cpus.put(&alloc.cpu_slots);
        self.gpus.put(&alloc.gpus);
        self.memory_used = self.memory_used.saturating_sub(alloc.memory_bytes);
    }
}

/// `1.5 GiB`-style text.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(cpus: u32, memory_bytes: u64) -> Resources {
        Resources {
            cpus,
            memory_bytes,
            gpus: 0,
        }
    }

    #[test]
    fn slots_take_lowest_free_and_come_back() {
        let mut s = Slots::new(4);
        assert_eq!(s.take(2), Some(vec![0, 1]));
        assert_eq!(s.take(3), None);
        s.put(&[0]);
        assert_eq!(s.take(2), Some(vec![0, 2]));
        assert_eq!(s.free(), 1);
        s.mark(&[3, 3, 99]);
        assert_eq!(s.free(), 0);
    }

    #[test]
    fn pool_tells_never_from_not_now() {
        let mut pool = Pool::new(2, 0, 1000);
        let a = pool.allocate(want(1, 600)).unwrap();
        assert_eq!(a.cpu_slots, [0]);
        assert!(matches!(pool.allocate(want(1, 600)), Err(NoFit::NotNow(_))));
        assert!(matches!(pool.allocate(want(3, 0)), Err(NoFit::Never(_))));
        pool.release(&a);
        assert_eq!(pool.allocate(want(2, 1000)).unwrap().cpu_slots, [0, 1]);
    }

    #[test]
    fn zero_cpus_still_takes_one() {
        let mut pool = Pool::new(1, 0, 0);
        assert_eq!(pool.allocate(want(0, 0)).unwrap().cpu_slots, [0]);
        assert!(matches!(pool.allocate(want(0, 0)), Err(NoFit::NotNow(_))));
    }

    #[test]
    fn formats_sizes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
