//! Counter slots of the kernel's per-interface arrays.

/// Counter slots: a fixed kernel array, recycled as interfaces come and go.
#[derive(Debug)]
pub struct SlotPool {
    next: u32,
    free: Vec<u32>,
    capacity: u32,
}

impl SlotPool {
    pub fn new(capacity: u32) -> Self {
        Self {
            next: 0,
            free: Vec::new(),
            capacity,
        }
    }

    pub fn take(&mut self) -> Option<u32> {
        if let Some(slot) = self.free.pop() {
            return Some(slot);
        }
        (self.next < self.capacity).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    pub fn give_back(&mut self, slot: u32) {
        self.free.push(slot);
    }

    /// One past the highest slot ever taken: every slot in use is below.
    pub fn end(&self) -> u32 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::SlotPool;

    #[test]
    fn slots_are_recycled_and_bounded() {
        let mut pool = SlotPool::new(2);
        assert_eq!(pool.take(), Some(0));
        assert_eq!(pool.take(), Some(1));
        assert_eq!(pool.take(), None, "full");
        assert_eq!(pool.end(), 2);
        pool.give_back(0);
        assert_eq!(pool.take(), Some(0), "a freed slot is reused");
        assert_eq!(pool.take(), None);
    }
}
