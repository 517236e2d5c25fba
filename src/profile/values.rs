//! Value types of the profile language that are more than a string or a number: sizes in
//! systemd's syntax, octal modes, user/group references and resource limits. Each parses
//! itself from TOML and serializes back to the text an admin would write.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A size in bytes, written like systemd does: `512K`, `256M`, `1G`, `infinity` (base 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Bytes(u64),
    Infinity,
}

impl Size {
    pub fn parse(text: &str) -> Result<Size, String> {
        let t = text.trim();
        if t == "infinity" {
            return Ok(Size::Infinity);
        }
        let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
            Some(i) => t.split_at(i),
            None => (t, ""),
        };
        let shift = match unit {
            "" | "B" => 0,
            "K" => 10,
            "M" => 20,
            "G" => 30,
            "T" => 40,
            "P" => 50,
            _ => return Err(size_error(text)),
        };
        let n: u64 = digits.parse().map_err(|_| size_error(text))?;
        n.checked_mul(1u64 << shift)
            .map(Size::Bytes)
            .ok_or_else(|| format!("size `{text}` is too large"))
    }

    pub fn bytes(self) -> Option<u64> {
        match self {
            Size::Bytes(b) => Some(b),
            Size::Infinity => None,
        }
    }
}

fn size_error(text: &str) -> String {
    format!("invalid size `{text}`: expected a whole number with an optional K, M, G, T or P suffix (base 1024), or `infinity`")
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Size::Infinity => f.write_str("infinity"),
            Size::Bytes(b) => {
                for (shift, unit) in [(50, "P"), (40, "T"), (30, "G"), (20, "M"), (10, "K")] {
                    if b != 0 && b % (1u64 << shift) == 0 {
                        return write!(f, "{}{unit}", b >> shift);
                    }
                }
                write!(f, "{b}")
            }
        }
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as \"256M\" or \"infinity\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                Size::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size::Bytes)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A file mode or umask written as an octal string, such as `"0755"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Mode;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an octal mode in quotes, such as \"0755\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Mode, E> {
                match u32::from_str_radix(v, 8) {
                    Ok(m) if m <= 0o7777 && !v.is_empty() => Ok(Mode(m)),
                    _ => Err(E::custom(format!(
                        "invalid mode `{v}`: expected octal digits such as \"0755\""
                    ))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Mode, E> {
                // A bare 755 in TOML is decimal; silently reading it as octal would hide a typo.
                Err(E::custom(format!(
                    "write modes as quoted octal strings: \"{v:04}\", not {v}"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:04o}", self.0))
    }
}

/// A user or group: a name looked up on the host, or a numeric id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdRef {
    Name(String),
    Id(u32),
}

impl fmt::Display for IdRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdRef::Name(n) => f.write_str(n),
            IdRef::Id(i) => write!(f, "{i}"),
        }
    }
}

impl<'de> Deserialize<'de> for IdRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IdRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name or a numeric id")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IdRef, E> {
                if v.is_empty() {
                    return Err(E::custom("a user or group name cannot be empty"));
                }
                Ok(IdRef::Name(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IdRef, E> {
                u32::try_from(v)
                    .ok()
                    .filter(|&id| id != u32::MAX)
                    .map(IdRef::Id)
                    .ok_or_else(|| E::custom(format!("id {v} is out of range")))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for IdRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            IdRef::Name(n) => s.serialize_str(n),
            IdRef::Id(i) => s.serialize_u32(*i),
        }
    }
}

/// A resource limit: a number or `"infinity"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Value(u64),
    Infinity,
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Limit;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative number or \"infinity\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Limit, E> {
                match v {
                    "infinity" => Ok(Limit::Infinity),
                    _ => Err(E::custom(format!(
                        "invalid limit `{v}`: expected a number or \"infinity\""
                    ))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Limit, E> {
                u64::try_from(v)
                    .map(Limit::Value)
                    .map_err(|_| E::custom("a limit cannot be negative"))
            }
            // TOML gives integers as i64; JSON (the plan's record) gives them as u64.
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Limit, E> {
                Ok(Limit::Value(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Limit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Limit::Value(v) => s.serialize_u64(*v),
            Limit::Infinity => s.serialize_str("infinity"),
        }
    }
}

/// One line of a uid or gid map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdRange {
    /// First id inside the sandbox.
    pub inside: u32,
    /// First id on the host it maps to.
    pub outside: u32,
    /// How many consecutive ids are mapped.
    pub count: u32,
}

/// The kinds of `[[mount]]` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    Volume,
    Tmpfs,
    Symlink,
}

impl fmt::Display for MountType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MountType::Bind => "bind",
            MountType::Volume => "volume",
            MountType::Tmpfs => "tmpfs",
            MountType::Symlink => "symlink",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_base_1024_and_round_trip() {
        assert_eq!(Size::parse("512K"), Ok(Size::Bytes(512 * 1024)));
        assert_eq!(Size::parse("256M"), Ok(Size::Bytes(256 << 20)));
        assert_eq!(Size::parse("1G"), Ok(Size::Bytes(1 << 30)));
        assert_eq!(Size::parse("infinity"), Ok(Size::Infinity));
        assert_eq!(Size::parse("4096"), Ok(Size::Bytes(4096)));
        assert_eq!(Size::Bytes(256 << 20).to_string(), "256M");
        assert_eq!(Size::Bytes(1000).to_string(), "1000");
    }

    #[test]
    fn bad_sizes_are_refused() {
        for bad in ["12Q", "M", "", "-1M", "1.5G", "99999999999999999999T"] {
            assert!(Size::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}

/// A percentage such as `"50%"`; may exceed 100 (CPU quotas on several cores).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percent(pub u32);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Percent;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a percentage in quotes, such as \"50%\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Percent, E> {
                v.strip_suffix('%')
                    .and_then(|n| n.trim().parse::<u32>().ok())
                    .filter(|&n| n > 0)
                    .map(Percent)
                    .ok_or_else(|| {
                        E::custom(format!(
                            "invalid percentage `{v}`: expected a whole number above 0 followed by %, such as \"50%\""
                        ))
                    })
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}%", self.0))
    }
}

/// How stockade places the sandbox in a cgroup (`[systemd] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// Delegate inside a delegating unit, a scope when systemd runs, else cgroup v2 files.
    Auto,
    /// A transient scope registered with systemd over D-Bus.
    Scope,
    /// Leaf cgroups inside the calling unit's delegated cgroup.
    Delegate,
    /// No cgroup handling; `[resources]` is refused.
    Off,
}

/// What network the sandbox has (`[network] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    /// A network namespace of its own with only `lo` (the default).
    None,
    /// The host's network namespace (no isolation of the network at all).
    Host,
    /// A network namespace with `eth0` on a named network's bridge.
    Bridge,
}
