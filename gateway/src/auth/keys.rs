//! Key material for JWS, with `ring` only: PEM, the few DER structures a
//! key file holds, and ring's verifying and signing keys.
//!
//! | algorithm | verifies with | signs with |
//! | --- | --- | --- |
//! | HS256 | `hmac::HMAC_SHA256` (constant-time compare) | the same key |
//! | RS256 | `RSA_PKCS1_2048_8192_SHA256` | `RsaKeyPair` (PKCS#8 or PKCS#1) |
//! | ES256 | `ECDSA_P256_SHA256_FIXED` (JWS `r‖s`) | `EcdsaKeyPair` (PKCS#8) |
//!
//! Public keys arrive as `PUBLIC KEY` (SubjectPublicKeyInfo) or, for RSA,
//! `RSA PUBLIC KEY` (PKCS#1) PEM; ring wants the PKCS#1 `RSAPublicKey` or
//! the uncompressed EC point, which the SPKI wraps. Reading it takes a
//! bounds-checked DER reader of a few lines rather than a second crypto
//! stack. Nothing here panics on its input.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair, UnparsedPublicKey};

/// One PEM block: its label (`PUBLIC KEY`, ...) and its DER bytes.
#[derive(Debug)]
pub(crate) struct Pem {
    pub(crate) label: String,
    pub(crate) der: Vec<u8>,
}

/// The first PEM block of `text`.
pub(crate) fn parse_pem(text: &str) -> Result<Pem, String> {
    const BEGIN: &str = "-----BEGIN ";
    const DASHES: &str = "-----";
    let start = text
        .find(BEGIN)
        .ok_or("no PEM block (a -----BEGIN ...----- line)")?;
    let rest = &text[start + BEGIN.len()..];
    let label_len = rest
        .find(DASHES)
        .ok_or("the PEM header line is cut short")?;
    let label = &rest[..label_len];
    let body = &rest[label_len + DASHES.len()..];
    let end = format!("-----END {label}-----");
    let body_len = body.find(&end).ok_or_else(|| format!("no {end} line"))?;
    let base64: String = body[..body_len]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = STANDARD.decode(base64).map_err(|e| {
        format!("the {label} block is not base64 ({e}); an encrypted key is not supported")
    })?;
    if der.is_empty() {
        return Err(format!("the {label} block is empty"));
    }
    Ok(Pem {
        label: label.to_owned(),
        der,
    })
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OBJECT_ID: u8 = 0x06;
/// 1.2.840.113549.1.1.1
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// 1.2.840.10045.2.1
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// 1.2.840.10045.3.1.7 (prime256v1)
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// A DER reader over a slice: each read takes one TLV off the front.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// The contents of the next TLV, which must have `tag`.
    fn read(&mut self, tag: u8) -> Result<&'a [u8], String> {
        let truncated = || "the DER structure is cut short".to_owned();
        let (&found, rest) = self.0.split_first().ok_or_else(truncated)?;
        if found != tag {
            return Err(format!(
                "unexpected DER tag 0x{found:02x} where 0x{tag:02x} belongs"
            ));
        }
        let (&first, mut rest) = rest.split_first().ok_or_else(truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err("a DER length is invalid".into());
            }
            let (len_bytes, after) = rest.split_at(n);
            rest = after;
            len_bytes
                .iter()
                .fold(0usize, |len, &b| (len << 8) | usize::from(b))
        };
        if rest.len() < len {
            return Err(truncated());
        }
        let (contents, after) = rest.split_at(len);
        self.0 = after;
        Ok(contents)
    }

    fn finish(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err("trailing bytes after the DER structure".into())
        }
    }
}

/// A SubjectPublicKeyInfo taken apart.
struct Spki<'a> {
    algorithm: &'a [u8],
    /// The algorithm parameters, as raw DER (may be empty).
    parameters: &'a [u8],
    key: &'a [u8],
}

fn parse_spki(der: &[u8]) -> Result<Spki<'_>, String> {
    let mut outer = Der(der);
    let mut spki = Der(outer.read(SEQUENCE)?);
    outer.finish()?;
    let mut algorithm = Der(spki.read(SEQUENCE)?);
    let oid = algorithm.read(OBJECT_ID)?;
    let bits = spki.read(BIT_STRING)?;
    spki.finish()?;
    match bits.split_first() {
        Some((0, key)) => Ok(Spki {
            algorithm: oid,
            parameters: algorithm.0,
            key,
        }),
        _ => Err("the public key bit string is malformed".into()),
    }
}

/// A public key file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyProblem {
    /// Not a key of the algorithm, or not readable.
    Invalid(String),
    /// An RSA modulus of this many bits, under the minimum.
    WeakRsa(usize),
}

/// A key that checks signatures.
pub(crate) enum VerifyKey {
    Hmac(hmac::Key),
    Rsa(UnparsedPublicKey<Vec<u8>>),
    Ecdsa(UnparsedPublicKey<Vec<u8>>),
}

impl VerifyKey {
    /// An HS256 key.
    pub(crate) fn hmac(secret: &[u8]) -> Self {
        Self::Hmac(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// An RS256 key from a `PUBLIC KEY` or `RSA PUBLIC KEY` PEM, with a
    /// modulus of at least `min_bits`.
    pub(crate) fn rsa_from_pem(pem: &str, min_bits: usize) -> Result<Self, KeyProblem> {
        let invalid = KeyProblem::Invalid;
        let pem = parse_pem(pem).map_err(invalid)?;
        let pkcs1 = match pem.label.as_str() {
            "RSA PUBLIC KEY" => pem.der,
            "PUBLIC KEY" => {
                let spki = parse_spki(&pem.der).map_err(invalid)?;
                if spki.algorithm != RSA_ENCRYPTION {
                    return Err(invalid("not an RSA public key".into()));
                }
                spki.key.to_vec()
            }
            other => {
                return Err(invalid(format!(
                    "a {other} PEM; expected PUBLIC KEY or RSA PUBLIC KEY"
                )));
            }
        };
        let bits =
            rsa_modulus_bits(&pkcs1).map_err(|e| invalid(format!("not an RSA public key: {e}")))?;
        if bits < min_bits {
            return Err(KeyProblem::WeakRsa(bits));
        }
        Ok(Self::Rsa(UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            pkcs1,
        )))
    }

    /// An ES256 key from a `PUBLIC KEY` PEM on curve P-256.
    pub(crate) fn p256_from_pem(pem: &str) -> Result<Self, KeyProblem> {
        let invalid = KeyProblem::Invalid;
        let pem = parse_pem(pem).map_err(invalid)?;
        if pem.label != "PUBLIC KEY" {
            return Err(invalid(format!("a {} PEM; expected PUBLIC KEY", pem.label)));
        }
        let spki = parse_spki(&pem.der).map_err(invalid)?;
        let curve = Der(spki.parameters).read(OBJECT_ID).ok();
        if spki.algorithm != EC_PUBLIC_KEY || curve != Some(P256) {
            return Err(invalid("not a P-256 public key".into()));
        }
        // ring takes the uncompressed point: 0x04, x, y.
        if spki.key.len() != 65 || spki.key[0] != 0x04 {
            return Err(invalid(
                "the P-256 point is not in uncompressed form".into(),
            ));
        }
        Ok(Self::Ecdsa(UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            spki.key.to_vec(),
        )))
    }

    /// Whether `signature` signs `message`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Self::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
            Self::Rsa(key) | Self::Ecdsa(key) => key.verify(message, signature).is_ok(),
        }
    }
}

/// The bit length of the modulus of a PKCS#1 `RSAPublicKey`.
fn rsa_modulus_bits(pkcs1: &[u8]) -> Result<usize, String> {
    let mut outer = Der(pkcs1);
    let mut key = Der(outer.read(SEQUENCE)?);
    outer.finish()?;
    let n = key.read(INTEGER)?;
    key.read(INTEGER)?;
    key.finish()?;
    Ok(modulus_bits(n))
}

/// Bits of a big-endian unsigned integer (leading zero bytes ignored).
fn modulus_bits(n: &[u8]) -> usize {
    let n = match n.iter().position(|&b| b != 0) {
        Some(first) => &n[first..],
        None => return 0,
    };
    n.len() * 8 - n[0].leading_zeros() as usize
}

/// A key that makes signatures (minting, tests).
pub(crate) enum SigningKey {
    Hmac(hmac::Key),
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
}

impl SigningKey {
    /// An HS256 key.
    pub(crate) fn hmac(secret: &[u8]) -> Self {
        Self::Hmac(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// An RS256 key from a `PRIVATE KEY` (PKCS#8) or `RSA PRIVATE KEY`
    /// (PKCS#1) PEM.
    pub(crate) fn rsa_from_pem(pem: &str) -> Result<Self, String> {
        let pem = parse_pem(pem)?;
        let pair = match pem.label.as_str() {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&pem.der),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&pem.der),
            other => {
                return Err(format!(
                    "a {other} PEM; expected PRIVATE KEY or RSA PRIVATE KEY"
                ));
            }
        };
        pair.map(Self::Rsa)
            .map_err(|e| format!("not an RSA private key of 2048 to 8192 bits: {e}"))
    }

    /// An ES256 key from a `PRIVATE KEY` (PKCS#8) PEM on curve P-256.
    pub(crate) fn p256_from_pem(pem: &str) -> Result<Self, String> {
        let pem = parse_pem(pem)?;
        if pem.label != "PRIVATE KEY" {
            return Err(format!(
                "a {} PEM; expected PRIVATE KEY (PKCS#8)",
                pem.label
            ));
        }
        EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &pem.der,
            &SystemRandom::new(),
        )
        .map(Self::Ecdsa)
        .map_err(|e| format!("not a P-256 private key: {e}"))
    }

    /// The JWS signature of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Self::Hmac(key) => Ok(hmac::sign(key, message).as_ref().to_vec()),
            Self::Rsa(pair) => {
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut out,
                )
                .map_err(|_| "RSA signing failed".to_owned())?;
                Ok(out)
            }
            Self::Ecdsa(pair) => pair
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "ECDSA signing failed".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulus_bits_ignores_leading_zeros() {
        assert_eq!(modulus_bits(&[0, 0x80, 0]), 16);
        assert_eq!(modulus_bits(&[0x01, 0xff]), 9);
        assert_eq!(modulus_bits(&[0, 0]), 0);
    }

    #[test]
    fn pem_errors_are_words() {
        for (text, needle) in [
            ("", "no PEM block"),
            ("-----BEGIN PUBLIC KEY", "cut short"),
            (
                "-----BEGIN PUBLIC KEY-----\nAAAA\n",
                "no -----END PUBLIC KEY-----",
            ),
            (
                "-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----",
                "not base64",
            ),
            ("-----BEGIN X-----\n-----END X-----", "empty"),
        ] {
            let err = parse_pem(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
        let pem = parse_pem("junk\n-----BEGIN A B-----\nAQID\n-----END A B-----\n").unwrap();
        assert_eq!(
            (pem.label.as_str(), pem.der.as_slice()),
            ("A B", &[1, 2, 3][..])
        );
    }

    #[test]
    fn der_reader_refuses_bad_lengths() {
        let cases: [&[u8]; 6] = [
            &[],
            &[0x30],
            &[0x30, 0x05, 0x00],
            &[0x30, 0x80],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x30, 0x82, 0xff],
        ];
        for der in cases {
            assert!(Der(der).read(SEQUENCE).is_err(), "{der:?}");
        }
        assert_eq!(
            Der(&[0x30, 0x81, 0x01, 0x07]).read(SEQUENCE),
            Ok(&[7u8][..])
        );
        assert!(Der(&[0x02, 0x00]).read(SEQUENCE).is_err());
    }

    #[test]
    fn sign_and_verify_round_trip_for_each_algorithm() {
        let hs = SigningKey::hmac(b"a-secret-of-at-least-thirty-two-bytes");
        let sig = hs.sign(b"msg").unwrap();
        assert!(VerifyKey::hmac(b"a-secret-of-at-least-thirty-two-bytes").verify(b"msg", &sig));
        assert!(!VerifyKey::hmac(b"another-secret-of-thirty-two-bytes!!").verify(b"msg", &sig));

        let (rsa, rsa_private) = super::super::testkeys::rsa("r");
        let signer = SigningKey::rsa_from_pem(rsa_private).unwrap();
        let verifier =
            VerifyKey::rsa_from_pem(rsa.public_key_pem.as_deref().unwrap(), 2048).unwrap();
        let sig = signer.sign(b"msg").unwrap();
        assert_eq!(sig.len(), 256);
        assert!(verifier.verify(b"msg", &sig));
        assert!(!verifier.verify(b"msh", &sig));

        let (ec, ec_private) = super::super::testkeys::ec("e");
        let signer = SigningKey::p256_from_pem(&ec_private).unwrap();
        let verifier = VerifyKey::p256_from_pem(ec.public_key_pem.as_deref().unwrap()).unwrap();
        let sig = signer.sign(b"msg").unwrap();
        assert_eq!(sig.len(), 64, "JWS ES256 is r‖s, not DER");
        assert!(verifier.verify(b"msg", &sig));
        assert!(!verifier.verify(b"msh", &sig));
    }

    #[test]
    fn an_rsa_public_key_in_pkcs1_form_is_accepted() {
        let (rsa, _) = super::super::testkeys::rsa("r");
        let spki = parse_pem(rsa.public_key_pem.as_deref().unwrap()).unwrap();
        let pkcs1 = parse_spki(&spki.der).unwrap().key.to_vec();
        let text = format!(
            "-----BEGIN RSA PUBLIC KEY-----\n{}\n-----END RSA PUBLIC KEY-----\n",
            STANDARD.encode(pkcs1)
        );
        assert!(VerifyKey::rsa_from_pem(&text, 2048).is_ok());
        assert_eq!(
            VerifyKey::rsa_from_pem(&text, 4096).err(),
            Some(KeyProblem::WeakRsa(2048))
        );
    }
}
