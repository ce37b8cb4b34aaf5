//! Plain old data: the one audited place where ABI structs are viewed as bytes.

use core::mem::size_of;

/// Kernel ABI data that can be viewed as bytes and built from any bytes.
///
/// # Safety
/// Implementors must be `#[repr(C)]` or `#[repr(transparent)]`, contain no padding bytes, no
/// pointers, references or enums, and accept every bit pattern as a valid value. The
/// [`abi_struct!`](crate::abi_struct) macro proves "no padding" at compile time by asserting that
/// the field sizes add up to the struct size.
pub unsafe trait Pod: Copy + 'static {
    /// The all-zero value.
    fn zeroed() -> Self {
        // SAFETY: every bit pattern, all zeroes included, is a valid `Self` (trait contract).
        unsafe { core::mem::zeroed() }
    }

    /// The value's bytes, in the machine's byte order, as the kernel sees them.
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: `Self` has no padding (trait contract), so all `size_of::<Self>()` bytes are
        // initialized; the slice borrows `self` and cannot outlive it.
        unsafe {
            core::slice::from_raw_parts((self as *const Self).cast::<u8>(), size_of::<Self>())
        }
    }

    /// The value's bytes, writable: any bytes written leave a valid `Self`.
    fn as_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_bytes`; and every bit pattern is a valid `Self`, so arbitrary writes
        // through the slice cannot create an invalid value.
        unsafe {
            core::slice::from_raw_parts_mut((self as *mut Self).cast::<u8>(), size_of::<Self>())
        }
    }

    /// Reads a value from the start of `bytes`; `None` if `bytes` is too short.
    fn read_from(bytes: &[u8]) -> Option<Self> {
        let mut value = Self::zeroed();
        value
            .as_bytes_mut()
            .copy_from_slice(bytes.get(..size_of::<Self>())?);
        Some(value)
    }
}

// SAFETY: primitive integers have no padding and every bit pattern is valid.
unsafe impl Pod for u8 {}
// SAFETY: as above.
unsafe impl Pod for u16 {}
// SAFETY: as above.
unsafe impl Pod for u32 {}
// SAFETY: as above.
unsafe impl Pod for u64 {}
// SAFETY: as above.
unsafe impl Pod for i32 {}
// SAFETY: as above.
unsafe impl Pod for i64 {}
// SAFETY: an array of `Pod` elements has no padding between elements (size is a multiple of
// alignment) and every element accepts every bit pattern.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// Compile-time proof that a field type is [`Pod`]; used by [`abi_struct!`](crate::abi_struct).
#[doc(hidden)]
pub const fn assert_pod<T: Pod>() {}

/// Declares a kernel ABI struct: `#[repr(C)]`, the kernel's field names, and compile-time checks
/// of its size, of every field's offset, of the absence of padding, and that every field is
/// [`Pod`]. Implements [`Pod`] and a zeroed `Default`.
#[macro_export]
#[doc(hidden)]
macro_rules! abi_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident (size $size:literal) {
            $(
                $(#[$fmeta:meta])*
                pub $field:ident : $ty:ty = $off:literal,
            )*
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        static_assertions::const_assert_eq!(core::mem::size_of::<$name>(), $size);
        $( static_assertions::const_assert_eq!(core::mem::offset_of!($name, $field), $off); )*
        // The fields add up to the whole struct: there is no padding anywhere.
        static_assertions::const_assert_eq!(0 $( + core::mem::size_of::<$ty>() )*, $size);
        const _: () = { $( $crate::abi::pod::assert_pod::<$ty>(); )* };

        // SAFETY: `#[repr(C)]`; every field is `Pod` (asserted above) and the field sizes sum to
        // the struct size (asserted above), so there is no padding and any bit pattern is valid.
        unsafe impl $crate::abi::Pod for $name {}

        impl Default for $name {
            fn default() -> Self {
                <Self as $crate::abi::Pod>::zeroed()
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_bytes() {
        let v: u32 = 0x0102_0304;
        let back = u32::read_from(v.as_bytes()).unwrap();
        assert_eq!(back, v);
        assert_eq!(u64::read_from(&[0u8; 7]), None);
        let mut a = [0u16; 3];
        a.as_bytes_mut()[2..4].copy_from_slice(&7u16.to_ne_bytes());
        assert_eq!(a, [0, 7, 0]);
    }
}
