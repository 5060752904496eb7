//! bcrypt for many passwords at once.
//!
//! bcrypt's EksBlowfish key schedule is one long chain of dependent table
//! lookups, so a single hash leaves most of a core's execution units idle
//! while each lookup waits for the one before it. Running `LANES` independent
//! hashes in lockstep, one round of each in turn, fills those idle slots:
//! `cargo run --release -p bench --bin hash_speed` measures about 3× the
//! throughput of the `bcrypt` crate at the same cost (README, "Codes").
//!
//! This computes exactly the function of the `bcrypt` crate (`$2b$`, NUL-
//! terminated key of at most 72 bytes); the tests check every output against
//! that crate, and verification keeps using the crate itself. Only the
//! scheduling of the work differs.

use super::blowfish_init::{P, S};

/// Hashes interleaved per call. Four 4 KiB S-box sets stay inside L1.
pub(super) const LANES: usize = 4;

/// `OrpheanBeholderScryDoubt`, the text bcrypt encrypts 64 times.
const MAGIC: [u32; 6] = [
    0x4f72_7068,
    0x6561_6e42,
    0x6568_6f6c,
    0x6465_7253,
    0x6372_7944,
    0x6f75_6274,
];

#[derive(Clone)]
struct Blowfish {
    s: [[u32; 256]; 4],
    p: [u32; 18],
}

impl Blowfish {
    #[inline(always)]
    fn f(&self, x: u32) -> u32 {
        let [a, b, c, d] = x.to_be_bytes();
        (self.s[0][usize::from(a)].wrapping_add(self.s[1][usize::from(b)]) ^ self.s[2][usize::from(c)])
            .wrapping_add(self.s[3][usize::from(d)])
    }
}

/// The next 32 bits of `bytes`, read cyclically from `*at`.
fn next_word(bytes: &[u8], at: &mut usize) -> u32 {
    let mut word = 0;
    for _ in 0..4 {
        if *at >= bytes.len() {
            *at = 0;
        }
        word = (word << 8) | u32::from(bytes[*at]);
        *at += 1;
    }
    word
}

/// Encrypts one block per lane, the lanes' rounds interleaved.
#[inline(always)]
fn encrypt<const N: usize>(state: &[Blowfish; N], lr: &mut [[u32; 2]; N]) {
    for round in 0..8 {
        for (block, bf) in lr.iter_mut().zip(state) {
            block[0] ^= bf.p[2 * round];
        }
        for (block, bf) in lr.iter_mut().zip(state) {
            block[1] ^= bf.f(block[0]) ^ bf.p[2 * round + 1];
        }
        for (block, bf) in lr.iter_mut().zip(state) {
            block[0] ^= bf.f(block[1]);
        }
    }
    for (block, bf) in lr.iter_mut().zip(state) {
        *block = [block[1] ^ bf.p[17], block[0] ^ bf.p[16]];
    }
}

/// The Blowfish key expansion, with `salt` mixed into every block when given
/// (bcrypt's `ExpandKey(state, salt, key)`; without a salt it is the plain
/// `ExpandKey(state, 0, key)` of the cost loop).
fn expand<const N: usize>(state: &mut [Blowfish; N], keys: [&[u8]; N], salts: Option<[&[u8]; N]>) {
    for (bf, key) in state.iter_mut().zip(keys) {
        let mut at = 0;
        for p in &mut bf.p {
            *p ^= next_word(key, &mut at);
        }
    }
    let mut salt_at = [0usize; N];
    let mut lr = [[0u32; 2]; N];
    let mut next_block = |state: &[Blowfish; N], lr: &mut [[u32; 2]; N]| {
        if let Some(salts) = salts {
            for ((block, salt), at) in lr.iter_mut().zip(salts).zip(&mut salt_at) {
                block[0] ^= next_word(salt, at);
                block[1] ^= next_word(salt, at);
            }
        }
        encrypt(state, lr);
    };
    for i in 0..9 {
        next_block(state, &mut lr);
        for (bf, block) in state.iter_mut().zip(&lr) {
            bf.p[2 * i..2 * i + 2].copy_from_slice(block);
        }
    }
    for sbox in 0..4 {
        for i in 0..128 {
            next_block(state, &mut lr);
            for (bf, block) in state.iter_mut().zip(&lr) {
                bf.s[sbox][2 * i..2 * i + 2].copy_from_slice(block);
            }
        }
    }
}

/// The raw 24-byte bcrypt output for each (NUL-terminated key, salt) pair.
/// `keys` must be 1 to 72 bytes (the caller truncates, as bcrypt does).
pub(super) fn bcrypt<const N: usize>(cost: u32, keys: [&[u8]; N], salts: [&[u8; 16]; N]) -> [[u8; 24]; N] {
    let salts: [&[u8]; N] = salts.map(|s| &s[..]);
    let mut state: [Blowfish; N] = std::array::from_fn(|_| Blowfish { s: S, p: P });
    expand(&mut state, keys, Some(salts));
    for _ in 0..1u64 << cost {
        expand(&mut state, keys, None);
        expand(&mut state, salts, None);
    }
    let mut output = [[0u8; 24]; N];
    for pair in 0..3 {
        let mut lr = [[MAGIC[2 * pair], MAGIC[2 * pair + 1]]; N];
        for _ in 0..64 {
            encrypt(&state, &mut lr);
        }
        for (out, block) in output.iter_mut().zip(&lr) {
            out[8 * pair..8 * pair + 4].copy_from_slice(&block[0].to_be_bytes());
            out[8 * pair + 4..8 * pair + 8].copy_from_slice(&block[1].to_be_bytes());
        }
    }
    output
}
