//! Valid identifiers for test data, shared by the end-to-end tests (`tests/common`) and the
//! benchmarks in `examples/` (included by path): not part of the library.
#![allow(dead_code)]

/// A valid unified social credit code (GB 32100 and GB 11714 checks) registered in `region`
/// (6 digits), for subject number `n`.
pub fn uscc_in(region: &str, n: usize) -> String {
    const CS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    let org8 = format!("{:08}", 10_000_000 + n);
    let ow = [3, 7, 9, 10, 5, 8, 4, 2];
    let s: u32 = org8
        .bytes()
        .zip(ow)
        .map(|(b, w)| (b - b'0') as u32 * w)
        .sum();
    let c9 = match 11 - s % 11 {
        10 => 'X',
        11 => '0',
        d => (b'0' + d as u8) as char,
    };
    let body = format!("91{region}{org8}{c9}");
    let w = [
        1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
    ];
    let t: usize = body
        .bytes()
        .zip(w)
        .map(|(b, w)| CS.iter().position(|c| *c == b).unwrap_or(0) * w)
        .sum();
    format!("{body}{}", CS[(31 - t % 31) % 31] as char)
}

/// A valid resident identity number (GB 11643) from its first 17 digits.
pub fn resident_id(first17: &str) -> String {
    let w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let s: u32 = first17
        .bytes()
        .zip(w)
        .map(|(b, w)| (b - b'0') as u32 * w)
        .sum();
    let check = b"10X98765432"[(s % 11) as usize] as char;
    format!("{first17}{check}")
}
