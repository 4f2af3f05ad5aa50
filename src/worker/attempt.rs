//! Which attempt on the platform a call is: 1-based, and never past `weibo.max_attempts`.

use std::fmt;

/// One attempt at calling the platform for a command: the `number`-th (1 for the first) of at
/// most `max`. Only [`Attempt::after`] makes one, so there is never an attempt 0, nor one
/// past the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    number: u32,
    max: u32,
}

impl Attempt {
    /// The attempt that follows `made` attempts when at most `max` are allowed; `None` when
    /// none is left (`made` reached `max`, possible when the limit was lowered while the
    /// command waited).
    pub fn after(made: u32, max: u32) -> Option<Self> {
        let number = made.checked_add(1)?;
        (number <= max).then_some(Self { number, max })
    }

    /// Its number, 1 for the first: the attempts made once it was.
    pub fn number(self) -> u32 {
        self.number
    }

    /// True for the last one allowed: a failure now is final.
    pub fn is_last(self) -> bool {
        self.number >= self.max
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.number, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_count_from_one_up_to_the_limit_and_no_further() {
        let first = Attempt::after(0, 3).unwrap();
        assert_eq!((first.number(), first.is_last()), (1, false));
        let last = Attempt::after(2, 3).unwrap();
        assert_eq!((last.number(), last.is_last()), (3, true));
        assert_eq!(last.to_string(), "3/3");
        assert_eq!(Attempt::after(3, 3), None);
        assert_eq!(Attempt::after(7, 3), None, "the limit lowered meanwhile");
        assert_eq!(Attempt::after(u32::MAX, u32::MAX), None);
        assert!(Attempt::after(0, 1).unwrap().is_last());
    }
}
