//! Rules for `[auth]` (with `[[auth.keys]]`) and `[ops]`.

use std::collections::HashMap;

use super::{COUNT_CEILING, Checker, as_usize, nonzero_u32};
use crate::schema::{Field, RawConfig, RawJwtKey};
use crate::sections::{Algorithm, Auth, AuthMode, JwtKey, KeyMaterial, Ops, Secret};

/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash.
const MIN_HS256_SECRET: usize = 32;
/// The shortest accepted `ops.api_key`.
const MIN_API_KEY: usize = 16;

pub(super) fn auth(c: &mut Checker, raw: &RawConfig) -> Auth {
    let (r, d) = (&raw.auth, Auth::default());
    let mode = c.checked("auth.mode", &r.mode, d.mode, |m| Ok(*m));
    let non_empty = |s: &String| {
        if s.is_empty() {
            Err("is empty; leave the key out to accept any".to_owned())
        } else {
            Ok(Some(s.clone()))
        }
    };
    let audience = c
        .checked("auth.audience", &r.audience, None, non_empty)
        .value;
    let issuer = c.checked("auth.issuer", &r.issuer, None, non_empty).value;
    let attempts = c
        .count(
            "auth.failed_attempts_per_minute",
            &r.failed_attempts_per_minute,
            u64::from(d.failed_attempts_per_minute.get()),
            1,
            COUNT_CEILING,
        )
        .value;
    let keys = jwt_keys(c, &r.keys);
    if mode.ok {
        match mode.value {
            AuthMode::Jwt if r.keys.is_empty() => c.invalid(
                "auth.keys",
                "is empty: auth.mode = \"jwt\" needs at least one [[auth.keys]] entry",
            ),
            // Keys without jwt mode most likely mean a forgotten `mode`:
            // refuse rather than run open.
            AuthMode::None if !r.keys.is_empty() || audience.is_some() || issuer.is_some() => c.invalid(
                "auth.mode",
                "\"none\" accepts every client, yet auth.keys, auth.audience or auth.issuer is set; \
                 set mode = \"jwt\" or remove them",
            ),
            _ => {}
        }
    }
    Auth {
        mode: mode.value,
        audience,
        issuer,
        refresh_before: c
            .duration(
                "auth.refresh_before",
                &r.refresh_before,
                d.refresh_before,
                false,
            )
            .value,
        refresh_grace: c
            .duration(
                "auth.refresh_grace",
                &r.refresh_grace,
                d.refresh_grace,
                true,
            )
            .value,
        failed_attempts_per_minute: nonzero_u32(attempts, d.failed_attempts_per_minute),
        keys,
    }
}

fn jwt_keys(c: &mut Checker, raw: &[RawJwtKey]) -> Vec<JwtKey> {
    let mut keys = Vec::new();
    let mut kids: HashMap<String, usize> = HashMap::new();
    for (i, k) in raw.iter().enumerate() {
        let at = |field: &str| format!("auth.keys[{i}].{field}");
        let kid = c.checked(&at("kid"), &k.kid, None, |kid| {
            if kid.is_empty() {
                Err("is empty".to_owned())
            } else {
                Ok(Some(kid.clone()))
            }
        });
        match &kid.value {
            Some(kid) => match kids.get(kid) {
                Some(first) => c.invalid(
                    &at("kid"),
                    format!("\"{kid}\" is also auth.keys[{first}].kid; kids must be unique"),
                ),
                None => {
                    kids.insert(kid.clone(), i);
                }
            },
            None if kid.ok => c.invalid(&at("kid"), "missing"),
            None => {}
        }
        let algorithm = c.checked(&at("algorithm"), &k.algorithm, None, |a| Ok(Some(*a)));
        let secret = c.checked(&at("secret"), &k.secret, None, |s| {
            if s.0.len() < MIN_HS256_SECRET {
                Err(format!(
                    "is {} bytes; HS256 needs at least {MIN_HS256_SECRET} (RFC 7518 §3.2)",
                    s.0.len()
                ))
            } else {
                Ok(Some(Secret::new(s.0.clone())))
            }
        });
        let file = c.checked(&at("public_key_file"), &k.public_key_file, None, |p| {
            Ok(Some(p.clone()))
        });
        let has_file = !matches!(k.public_key_file, Field::Absent);
        let has_secret = !matches!(k.secret, Field::Absent);
        let material = match algorithm.value {
            None => {
                if algorithm.ok {
                    c.invalid(
                        &at("algorithm"),
                        "missing (one of \"HS256\", \"RS256\", \"ES256\")",
                    );
                }
                None
            }
            Some(Algorithm::Hs256) => {
                if has_file {
                    c.invalid(
                        &at("public_key_file"),
                        "not used by HS256 (it takes a secret); remove it",
                    );
                }
                if !has_secret {
                    c.invalid(&at("secret"), "missing: HS256 needs a shared secret");
                }
                secret.value.map(|secret| KeyMaterial::Hs256 { secret })
            }
            Some(alg @ (Algorithm::Rs256 | Algorithm::Es256)) => {
                if has_secret {
                    c.invalid(
                        &at("secret"),
                        format!(
                            "not used by {} (it takes a public_key_file); remove it",
                            alg.as_str()
                        ),
                    );
                }
                if !has_file {
                    c.invalid(
                        &at("public_key_file"),
                        format!("missing: {} needs a PEM public key file", alg.as_str()),
                    );
                }
                file.value.map(|public_key_file| match alg {
                    Algorithm::Rs256 => KeyMaterial::Rs256 { public_key_file },
                    _ => KeyMaterial::Es256 { public_key_file },
                })
            }
        };
        if let (Some(kid), Some(material)) = (kid.value, material) {
            keys.push(JwtKey { kid, material });
        }
    }
    keys
}

pub(super) fn ops(c: &mut Checker, raw: &RawConfig) -> Ops {
    let api_key = c.checked("ops.api_key", &raw.ops.api_key, None, |k| {
        let len = k.0.chars().count();
        if len < MIN_API_KEY {
            Err(format!("is {len} characters; the minimum is {MIN_API_KEY}"))
        } else {
            Ok(Some(Secret::new(k.0.clone())))
        }
    });
    let d = Ops::default();
    Ops {
        api_key: api_key.value,
        max_connections: as_usize(
            c.count(
                "ops.max_connections",
                &raw.ops.max_connections,
                d.max_connections as u64,
                1,
                65_536,
            )
            .value,
        ),
        idle_timeout: c
            .duration(
                "ops.idle_timeout",
                &raw.ops.idle_timeout,
                d.idle_timeout,
                false,
            )
            .value,
    }
}
