//! A small hand-written `bitflags`: typed flag sets over kernel integers, with names.

/// Declares a `#[repr(transparent)]` flag-set newtype over an integer, with one associated
/// constant per named bit (named as in the kernel header, without its prefix), set operations,
/// and iteration over the names of the bits that are set.
///
/// Unknown bits are kept, not dropped: a newer kernel may report bits this build has no name for,
/// and callers must be able to see them ([`unknown_bits`](#method.unknown_bits)).
#[macro_export]
#[doc(hidden)]
macro_rules! flag_set {
    (
        $(#[$meta:meta])*
        pub struct $name:ident($int:ty) {
            $(
                $(#[$fmeta:meta])*
                const $flag:ident = $value:expr;
            )*
        }
    ) => {
        $(#[$meta])*
        #[repr(transparent)]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name($int);

        impl $name {
            $(
                $(#[$fmeta])*
                pub const $flag: $name = $name($value);
            )*

            /// Every named flag with its name, in bit order.
            pub const NAMED: &'static [(&'static str, $name)] = &[$((stringify!($flag), $name::$flag),)*];

            /// The union of every named flag.
            pub const ALL_KNOWN: $name = $name(0 $(| $value)*);

            /// No flag set.
            pub const fn empty() -> $name {
                $name(0)
            }

            /// From raw bits, keeping any bit this build has no name for.
            pub const fn from_bits_retain(bits: $int) -> $name {
                $name(bits)
            }

            /// The raw bits.
            pub const fn bits(self) -> $int {
                self.0
            }

            /// True if no bit is set.
            pub const fn is_empty(self) -> bool {
                self.0 == 0
            }

            /// True if every bit of `other` is set in `self`.
            pub const fn contains(self, other: $name) -> bool {
                self.0 & other.0 == other.0
            }

            /// True if any bit of `other` is set in `self`.
            pub const fn intersects(self, other: $name) -> bool {
                self.0 & other.0 != 0
            }

            /// `self` with the bits of `other` added.
            pub const fn union(self, other: $name) -> $name {
                $name(self.0 | other.0)
            }

            /// `self` with the bits of `other` removed.
            pub const fn difference(self, other: $name) -> $name {
                $name(self.0 & !other.0)
            }

            /// The bits in both `self` and `other`.
            pub const fn intersection(self, other: $name) -> $name {
                $name(self.0 & other.0)
            }

            /// Sets or clears the bits of `other`.
            pub fn set(&mut self, other: $name, on: bool) {
                if on { self.0 |= other.0 } else { self.0 &= !other.0 }
            }

            /// The set bits that have no name in this build.
            pub const fn unknown_bits(self) -> $int {
                self.0 & !Self::ALL_KNOWN.0
            }

            /// The flag called `name` (as in [`NAMED`](Self::NAMED), case-insensitive).
            pub fn from_name(name: &str) -> Option<$name> {
                Self::NAMED
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|&(_, flag)| flag)
            }

            /// The names of the set bits that have one, in bit order.
            pub fn names(self) -> impl Iterator<Item = &'static str> {
                Self::NAMED
                    .iter()
                    .filter(move |(_, flag)| !flag.is_empty() && self.contains(*flag))
                    .map(|&(name, _)| name)
            }
        }

        impl core::ops::BitOr for $name {
            type Output = $name;
            fn bitor(self, rhs: $name) -> $name {
                self.union(rhs)
            }
        }

        impl core::ops::BitOrAssign for $name {
            fn bitor_assign(&mut self, rhs: $name) {
                *self = self.union(rhs);
            }
        }

        impl core::ops::BitAnd for $name {
            type Output = $name;
            fn bitand(self, rhs: $name) -> $name {
                self.intersection(rhs)
            }
        }

        impl core::ops::Sub for $name {
            type Output = $name;
            fn sub(self, rhs: $name) -> $name {
                self.difference(rhs)
            }
        }

        /// `A | B | 0x100` (unknown bits in hex), or `(empty)`.
        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                let mut first = true;
                for name in self.names() {
                    if !first {
                        f.write_str(" | ")?;
                    }
                    f.write_str(name)?;
                    first = false;
                }
                let unknown = self.unknown_bits();
                if unknown != 0 {
                    if !first {
                        f.write_str(" | ")?;
                    }
                    write!(f, "{unknown:#x}")?;
                    first = false;
                }
                if first {
                    f.write_str("(empty)")?;
                }
                Ok(())
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        // SAFETY: `#[repr(transparent)]` over a `Pod` integer: same layout, no padding, every
        // bit pattern valid (unknown bits are retained, never rejected).
        unsafe impl $crate::abi::Pod for $name {}
    };
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::format;
    use std::vec::Vec;

    flag_set! {
        /// Test flags.
        pub struct Demo(u32) {
            /// a
            const A = 1 << 0;
            /// c
            const C = 1 << 2;
        }
    }

    #[test]
    fn names_and_unknown_bits() {
        let f = Demo::A | Demo::from_bits_retain(0x100);
        assert!(f.contains(Demo::A));
        assert!(!f.contains(Demo::C));
        assert_eq!(f.unknown_bits(), 0x100);
        assert_eq!(f.names().collect::<Vec<_>>(), ["A"]);
        assert_eq!(format!("{f}"), "A | 0x100");
        assert_eq!(format!("{:?}", Demo::empty()), "Demo((empty))");
        assert_eq!(Demo::from_name("c"), Some(Demo::C));
        assert_eq!(Demo::from_name("b"), None);
        assert_eq!(Demo::ALL_KNOWN.bits(), 0b101);
        assert_eq!((Demo::ALL_KNOWN - Demo::A).bits(), 0b100);
        assert!(f.intersects(Demo::ALL_KNOWN) && !f.intersects(Demo::C));
        let mut g = Demo::empty();
        g.set(Demo::C, true);
        assert_eq!(g, Demo::C);
        g.set(Demo::C, false);
        assert!(g.is_empty());
    }
}
