//! [`Signer`]: HMAC-SHA256 over what a worker acts on (a job entry) and what
//! a server acts on (a reply), with the keys of `--broker-secret-file`, so
//! that whoever can write to the broker without the key can forge neither.
//!
//! A MAC covers its fields length-prefixed, after a label that says what is
//! signed ([`Signed`]), so that no two different messages have the same
//! bytes and a job's MAC is never a valid reply's. It travels as 64 hex
//! digits. The first key signs; every key is accepted, so that a new key can
//! be rolled out everywhere before the old one is retired
//! (docs/distributed.md, "Security").

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The shortest key accepted: 16 bytes (128 bits), as `openssl rand -hex
/// 16` writes at the least.
pub const MIN_KEY_LEN: usize = 16;

/// The length of a MAC in hex digits.
pub const MAC_HEX_LEN: usize = 64;

/// What a MAC is over: each kind has its own label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed {
    /// A job entry: id, job, reply list, deadline.
    Job,
    /// A reply: reply list, id, job, outcome and answer.
    Reply,
}

impl Signed {
    fn label(self) -> &'static [u8] {
        match self {
            Signed::Job => b"ysum job v2",
            Signed::Reply => b"ysum reply v2",
        }
    }
}

/// A key that cannot sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No key at all.
    #[error("no signing key: the secret file is empty")]
    None,
    /// A key below [`MIN_KEY_LEN`] bytes (the key itself is not quoted).
    #[error("signing key {line} is {len} bytes long; it must be at least {MIN_KEY_LEN}")]
    TooShort {
        /// Its line in the secret file, from 1.
        line: usize,
        /// Its length.
        len: usize,
    },
}

/// Signs with the first key and checks with every key.
#[derive(Clone)]
pub struct Signer {
    /// Each key's MAC state with the key already absorbed: cloning it is
    /// cheaper than starting from the key for every message.
    keys: Vec<HmacSha256>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({} keys)", self.keys.len())
    }
}

impl Signer {
    /// A signer with `keys`; the first signs.
    ///
    /// # Errors
    ///
    /// [`KeyError`] when there is none or one is too short.
    pub fn new(keys: &[Secret]) -> Result<Signer, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::None);
        }
        let keys = keys
            .iter()
            .enumerate()
            .map(|(index, key)| {
                let bytes = key.expose();
                if bytes.len() < MIN_KEY_LEN {
                    return Err(KeyError::TooShort {
                        line: index + 1,
                        len: bytes.len(),
                    });
                }
                // HMAC takes a key of any length.
                Ok(HmacSha256::new_from_slice(bytes).expect("HMAC accepts any key length"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Signer { keys })
    }

    /// The MAC of `fields` as `what`, in hex, with the first key.
    pub fn sign(&self, what: Signed, fields: &[&[u8]]) -> String {
        let tag = absorb(self.keys[0].clone(), what, fields).finalize();
        hex(&tag.into_bytes())
    }

    /// Whether `mac` (hex) is the MAC of `fields` as `what` under any key.
    /// Compared in constant time.
    pub fn verify(&self, what: Signed, fields: &[&[u8]], mac: &str) -> bool {
        let Some(expected) = unhex(mac) else {
            return false;
        };
        self.keys.iter().any(|key| {
            absorb(key.clone(), what, fields)
                .verify_slice(&expected)
                .is_ok()
        })
    }
}

/// Feeds the label and each field, length-prefixed, to `mac`.
fn absorb(mut mac: HmacSha256, what: Signed, fields: &[&[u8]]) -> HmacSha256 {
    for part in std::iter::once(what.label()).chain(fields.iter().copied()) {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        mac.update(&len.to_be_bytes());
        mac.update(part);
    }
    mac
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    text
}

/// The 32 bytes of a MAC written by [`hex`]; `None` for anything else.
fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != MAC_HEX_LEN {
        return None;
    }
    let digit = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(keys: &[&str]) -> Signer {
        let keys: Vec<Secret> = keys.iter().map(|k| Secret::new(*k)).collect();
        Signer::new(&keys).expect("valid keys")
    }

    /// A MAC checks under its own key and fields only.
    #[test]
    fn macs_check_only_what_they_signed() {
        let a = signer(&["0123456789abcdef-a"]);
        let mac = a.sign(Signed::Job, &[b"1", b"sumn 3"]);
        assert_eq!(mac.len(), MAC_HEX_LEN);
        assert!(a.verify(Signed::Job, &[b"1", b"sumn 3"], &mac));
        // Another field, another kind, another key, a cut or bad MAC.
        assert!(!a.verify(Signed::Job, &[b"1", b"sumn 4"], &mac));
        assert!(!a.verify(Signed::Reply, &[b"1", b"sumn 3"], &mac));
        assert!(!signer(&["0123456789abcdef-b"]).verify(Signed::Job, &[b"1", b"sumn 3"], &mac));
        assert!(!a.verify(Signed::Job, &[b"1", b"sumn 3"], &mac[..63]));
        assert!(!a.verify(Signed::Job, &[b"1", b"sumn 3"], &"zz".repeat(32)));
        assert!(!a.verify(Signed::Job, &[b"1", b"sumn 3"], ""));
    }

    /// Fields are length-prefixed: moving bytes between them changes the MAC.
    #[test]
    fn field_boundaries_count() {
        let a = signer(&["0123456789abcdef-a"]);
        let mac = a.sign(Signed::Job, &[b"12", b"3"]);
        assert!(!a.verify(Signed::Job, &[b"1", b"23"], &mac));
        assert!(!a.verify(Signed::Job, &[b"123"], &mac));
    }

    /// During a rotation, a signer with the new key first and the old one
    /// second signs with the new one and accepts both.
    #[test]
    fn every_key_checks_the_first_signs() {
        let old = signer(&["old-key-0123456789"]);
        let both = signer(&["new-key-0123456789", "old-key-0123456789"]);
        let new = signer(&["new-key-0123456789"]);
        let from_old = old.sign(Signed::Reply, &[b"x"]);
        let from_both = both.sign(Signed::Reply, &[b"x"]);
        assert!(both.verify(Signed::Reply, &[b"x"], &from_old));
        assert!(new.verify(Signed::Reply, &[b"x"], &from_both));
        assert!(!old.verify(Signed::Reply, &[b"x"], &from_both));
    }

    /// Short keys and no keys are refused without quoting the key.
    #[test]
    fn weak_keys_are_refused() {
        assert_eq!(Signer::new(&[]).unwrap_err(), KeyError::None);
        let err =
            Signer::new(&[Secret::new("long-enough-key-1"), Secret::new("short")]).unwrap_err();
        assert_eq!(err, KeyError::TooShort { line: 2, len: 5 });
        assert!(!err.to_string().contains("short"), "{err}");
    }

    /// Hex round-trips; anything else is not a MAC.
    #[test]
    fn hex_round_trips() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        assert_eq!(unhex(&hex(&bytes)), Some(bytes));
        assert_eq!(unhex(&"0".repeat(63)), None);
        assert_eq!(unhex(&"g".repeat(64)), None);
    }
}
