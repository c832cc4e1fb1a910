//! Mirror test: the mapped types, random values of each as SQL literals, and the expected Turso
//! value of each (computed in PostgreSQL).

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ty {
    I2,
    I4,
    I8,
    Bool,
    F4,
    F8,
    Num,
    Text,
    Varchar,
    Bytea,
    Date,
    Ts,
    Tstz,
    Uuid,
    Jsonb,
    IntArr,
    TextArr,
    Interval,
    /// text with STORAGE EXTERNAL, for TOAST-sized values.
    Big,
}

pub(super) const ALL_TYPES: [Ty; 19] = [
    Ty::I2,
    Ty::I4,
    Ty::I8,
    Ty::Bool,
    Ty::F4,
    Ty::F8,
    Ty::Num,
    Ty::Text,
    Ty::Varchar,
    Ty::Bytea,
    Ty::Date,
    Ty::Ts,
    Ty::Tstz,
    Ty::Uuid,
    Ty::Jsonb,
    Ty::IntArr,
    Ty::TextArr,
    Ty::Interval,
    Ty::Big,
];

/// How a value is stored in Turso (SQLite storage classes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Class {
    Int,
    /// REAL, or TEXT for NaN / Infinity / -Infinity.
    Float,
    Text,
    Blob,
}

impl Ty {
    pub(super) fn short(self) -> &'static str {
        match self {
            Ty::I2 => "i2",
            Ty::I4 => "i4",
            Ty::I8 => "i8",
            Ty::Bool => "b",
            Ty::F4 => "f4",
            Ty::F8 => "f8",
            Ty::Num => "num",
            Ty::Text => "t",
            Ty::Varchar => "vc",
            Ty::Bytea => "by",
            Ty::Date => "d",
            Ty::Ts => "ts",
            Ty::Tstz => "tstz",
            Ty::Uuid => "u",
            Ty::Jsonb => "jb",
            Ty::IntArr => "ia",
            Ty::TextArr => "ta",
            Ty::Interval => "iv",
            Ty::Big => "big",
        }
    }

    pub(super) fn pg_type(self) -> &'static str {
        match self {
            Ty::I2 => "int2",
            Ty::I4 => "int4",
            Ty::I8 => "int8",
            Ty::Bool => "bool",
            Ty::F4 => "float4",
            Ty::F8 => "float8",
            Ty::Num => "numeric",
            Ty::Text | Ty::Big => "text",
            Ty::Varchar => "varchar(40)",
            Ty::Bytea => "bytea",
            Ty::Date => "date",
            Ty::Ts => "timestamp",
            Ty::Tstz => "timestamptz",
            Ty::Uuid => "uuid",
            Ty::Jsonb => "jsonb",
            Ty::IntArr => "int4[]",
            Ty::TextArr => "text[]",
            Ty::Interval => "interval",
        }
    }

    /// From `format_type()` and `attstorage`.
    pub(super) fn from_catalog(format_type: &str, storage: &str) -> Option<Ty> {
        Some(match format_type {
            "smallint" => Ty::I2,
            "integer" => Ty::I4,
            "bigint" => Ty::I8,
            "boolean" => Ty::Bool,
            "real" => Ty::F4,
            "double precision" => Ty::F8,
            "numeric" => Ty::Num,
            "text" if storage == "e" => Ty::Big,
            "text" => Ty::Text,
            "character varying(40)" => Ty::Varchar,
            "bytea" => Ty::Bytea,
            "date" => Ty::Date,
            "timestamp without time zone" => Ty::Ts,
            "timestamp with time zone" => Ty::Tstz,
            "uuid" => Ty::Uuid,
            "jsonb" => Ty::Jsonb,
            "integer[]" => Ty::IntArr,
            "text[]" => Ty::TextArr,
            "interval" => Ty::Interval,
            _ => return None,
        })
    }

    pub(super) fn class(self) -> Class {
        match self {
            Ty::I2 | Ty::I4 | Ty::I8 | Ty::Bool => Class::Int,
            Ty::F4 | Ty::F8 => Class::Float,
            Ty::Bytea => Class::Blob,
            _ => Class::Text,
        }
    }

    /// The column type pgturso declares in Turso (README type table).
    pub(super) fn turso_decl(self) -> &'static str {
        match self.class() {
            Class::Int => "INTEGER",
            Class::Float => "REAL",
            Class::Blob => "BLOB",
            Class::Text => "TEXT",
        }
    }

    /// A PostgreSQL expression giving, as text, exactly what Turso should hold for column `q`:
    /// integers and booleans as integers, floats by their exact value (special values as their
    /// text), bytea as upper-case hex, dates and times as ISO text (timestamptz in UTC with `Z`,
    /// trailing zeros of the fraction dropped), arrays as JSON, the rest as the type's output.
    pub(super) fn expected_expr(self, q: &str) -> String {
        let iso = |e: &str, fmt: &str, suffix: &str| {
            format!(
                "CASE WHEN isfinite({q}) THEN rtrim(rtrim(to_char({e}, '{fmt}'), '0'), '.'){suffix} ELSE {q}::text END"
            )
        };
        match self {
            Ty::I2 | Ty::I4 | Ty::I8 => format!("{q}::text"),
            Ty::Bool => format!("{q}::int::text"),
            Ty::F4 | Ty::F8 => format!("{q}::float8::text"),
            Ty::Num | Ty::Text | Ty::Varchar | Ty::Big | Ty::Uuid | Ty::Jsonb | Ty::Interval => {
                format!("{q}::text")
            }
            Ty::Bytea => format!("upper(encode({q}, 'hex'))"),
            Ty::Date => format!(
                "CASE WHEN isfinite({q}) THEN to_char({q}, 'YYYY-MM-DD') ELSE {q}::text END"
            ),
            Ty::Ts => iso(q, "YYYY-MM-DD HH24:MI:SS.US", ""),
            Ty::Tstz => iso(
                &format!("{q} AT TIME ZONE 'UTC'"),
                "YYYY-MM-DD HH24:MI:SS.US",
                " || 'Z'",
            ),
            Ty::IntArr | Ty::TextArr => format!("array_to_json({q})::text"),
        }
    }
}

/// A value as compared: what Turso holds, or what it should hold.
#[derive(Clone, Debug)]
pub(super) enum V {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    /// Upper-case hex.
    Blob(String),
}

impl PartialEq for V {
    fn eq(&self, other: &V) -> bool {
        match (self, other) {
            (V::Null, V::Null) => true,
            (V::Int(a), V::Int(b)) => a == b,
            (V::Real(a), V::Real(b)) => a == b,
            (V::Text(a), V::Text(b)) | (V::Blob(a), V::Blob(b)) => a == b,
            _ => false,
        }
    }
}

impl V {
    /// A string identifying the value (for keys and multisets).
    pub(super) fn canon(&self) -> String {
        match self {
            V::Null => "N".into(),
            V::Int(i) => format!("I{i}"),
            // + 0.0 turns -0.0 into 0.0, which compare equal.
            V::Real(f) => format!("R{:016x}", (f + 0.0).to_bits()),
            V::Text(s) => format!("T{s}"),
            V::Blob(h) => format!("B{h}"),
        }
    }

    pub(super) fn show(&self) -> String {
        let s = match self {
            V::Null => "NULL".to_string(),
            V::Int(i) => format!("integer {i}"),
            V::Real(f) => format!("real {f:?}"),
            V::Text(s) => format!("text {s:?}"),
            V::Blob(h) => format!("blob x'{h}'"),
        };
        shorten(&s, 160)
    }

    pub(super) fn expected(ty: Ty, text: Option<String>) -> V {
        let Some(s) = text else { return V::Null };
        match ty.class() {
            Class::Int => V::Int(s.parse().unwrap_or_else(|_| panic!("integer {s}"))),
            Class::Float => match s.as_str() {
                "NaN" | "Infinity" | "-Infinity" => V::Text(s),
                _ => V::Real(s.parse().unwrap_or_else(|_| panic!("float {s}"))),
            },
            Class::Blob => V::Blob(s),
            Class::Text => V::Text(s),
        }
    }

    pub(super) fn from_turso(class: &Json, value: &Json) -> V {
        let text = || value.as_str().expect("text value").to_string();
        match class.as_str().expect("typeof is text") {
            "null" => V::Null,
            "integer" => V::Int(value.as_i64().expect("integer value")),
            "real" => V::Real(text().parse().expect("printf of a real parses")),
            "text" => V::Text(text()),
            "blob" => V::Blob(text()),
            other => panic!("unknown storage class {other}"),
        }
    }
}

pub(super) fn shorten(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((cut, _)) => format!("{}… ({} chars)", &s[..cut], s.chars().count()),
        None => s.to_string(),
    }
}

/// A PostgreSQL identifier, quoted.
pub(super) fn qi(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A PostgreSQL string literal (standard_conforming_strings: backslashes are plain).
pub(super) fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Pieces random text is made of: ASCII, quotes, backslashes, whitespace and control
/// characters, multi-byte letters, emoji (with ZWJ sequences and flags), combining marks.
pub(super) const PIECES: &[&str] = &[
    "a",
    "b",
    "Z",
    "q",
    "0",
    "7",
    " ",
    "  ",
    "'",
    "''",
    "\"",
    "\\",
    "\\\\",
    "\n",
    "\t",
    "\r\n",
    "é",
    "ü",
    "ß",
    "ñ",
    "Ø",
    "中",
    "文",
    "한",
    "ㅎ",
    "Ж",
    "ع",
    "ע",
    "ह",
    "😀",
    "🚀",
    "👩‍💻",
    "🇫🇷",
    "e\u{301}",
    "\u{1}",
    "\u{1f}",
    "\u{7f}",
    "\u{a0}",
    "\u{2028}",
    "\u{feff}",
    "\u{fffd}",
    "\u{10ffff}",
    "%",
    "_",
    "?",
    ";",
    "--",
    "/*",
    "$1",
    "{",
    "}",
    ",",
    "NULL",
    "[",
    "]",
    ":",
];

pub(super) fn rand_text(rng: &mut Rng, max_chars: usize) -> String {
    let n = if rng.chance(0.1) {
        0
    } else {
        rng.range(1, max_chars as i64) as usize
    };
    let mut s = String::new();
    let mut chars = 0;
    let mut tries = 0;
    while chars < n && tries < 4 * n + 8 {
        tries += 1;
        let p = if rng.chance(0.5) {
            // Plain letters keep values readable.
            ["x", "y", "m", "k", "e", "o"][rng.below(6) as usize]
        } else {
            rng.pick(PIECES)
        };
        let c = p.chars().count();
        if chars + c <= n {
            s.push_str(p);
            chars += c;
        }
    }
    s
}

pub(super) fn rand_f64(rng: &mut Rng) -> f64 {
    match rng.weighted(&[5, 3, 3, 3, 3, 30, 25, 8, 20]) {
        0 => f64::NAN,
        1 => f64::INFINITY,
        2 => f64::NEG_INFINITY,
        3 => -0.0,
        4 => 0.0,
        5 => loop {
            let f = f64::from_bits(rng.next());
            if f.is_finite() {
                break f;
            }
        },
        6 => {
            rng.range(-10_000, 10_000) as f64
                / [1.0, 2.0, 4.0, 10.0, 100.0, 3.0][rng.below(6) as usize]
        }
        7 => f64::from_bits(rng.below(1 << 52)) * if rng.chance(0.5) { -1.0 } else { 1.0 },
        _ => (rng.next() as f64 / u64::MAX as f64 - 0.5) * 2e6,
    }
}

pub(super) fn rand_f32(rng: &mut Rng) -> f32 {
    match rng.weighted(&[5, 3, 3, 3, 3, 30, 25, 5, 20]) {
        0 => f32::NAN,
        1 => f32::INFINITY,
        2 => f32::NEG_INFINITY,
        3 => -0.0,
        4 => 0.0,
        5 => loop {
            let f = f32::from_bits(rng.next() as u32);
            if f.is_finite() {
                break f;
            }
        },
        6 => {
            rng.range(-10_000, 10_000) as f32
                / [1.0, 2.0, 4.0, 10.0, 100.0, 3.0][rng.below(6) as usize]
        }
        7 => f32::from_bits(rng.below(1 << 23) as u32),
        _ => ((rng.next() as f64 / u64::MAX as f64 - 0.5) * 2e6) as f32,
    }
}

pub(super) fn float_lit(f: f64, cast: &str) -> String {
    let s = if f.is_nan() {
        "NaN".to_string()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else {
        format!("{f:?}")
    };
    format!("'{s}'::{cast}")
}

pub(super) fn digits(rng: &mut Rng, n: usize, nonzero_first: bool) -> String {
    let mut s = String::with_capacity(n);
    for i in 0..n {
        let d = if i == 0 && nonzero_first {
            rng.range(1, 9)
        } else {
            rng.range(0, 9)
        };
        s.push((b'0' + d as u8) as char);
    }
    s
}

pub(super) fn rand_numeric(rng: &mut Rng) -> String {
    let sign = if rng.chance(0.3) { "-" } else { "" };
    let s = match rng.weighted(&[4, 2, 2, 4, 3, 2, 83]) {
        0 => "NaN".to_string(),
        1 => "Infinity".to_string(),
        2 => "-Infinity".to_string(),
        3 => format!("{sign}{}", digits(rng, 1000, true)),
        4 => format!(
            "{sign}{}.{}",
            digits(rng, 600, true),
            digits(rng, 400, false)
        ),
        5 => format!("{sign}0.{}1", "0".repeat(rng.range(0, 900) as usize)),
        _ => {
            let int = rng.range(1, 20) as usize;
            let frac = rng.range(0, 12) as usize;
            let mut s = format!("{sign}{}", digits(rng, int, false));
            if frac > 0 {
                s.push('.');
                s.push_str(&digits(rng, frac, false));
            }
            s
        }
    };
    format!("'{s}'::numeric")
}

pub(super) fn rand_bytes(rng: &mut Rng, n: usize) -> String {
    let mut s = String::with_capacity(2 * n);
    for _ in 0..n {
        let b = if rng.chance(0.25) {
            0
        } else {
            rng.below(256) as u8
        };
        write!(s, "{b:02x}").unwrap();
    }
    s
}

pub(super) fn rand_year(rng: &mut Rng) -> i64 {
    match rng.weighted(&[70, 10, 10, 10]) {
        0 => rng.range(1950, 2050),
        1 => rng.range(2, 999),
        2 => rng.range(9000, 9998),
        _ => rng.range(1000, 8999),
    }
}

pub(super) fn rand_time(rng: &mut Rng) -> String {
    let us = match rng.weighted(&[40, 20, 40]) {
        0 => 0,
        1 => rng.range(0, 999) * 1000,
        _ => rng.range(0, 999_999),
    };
    format!(
        "{:02}:{:02}:{:02}.{us:06}",
        rng.range(0, 23),
        rng.range(0, 59),
        rng.range(0, 59)
    )
}

pub(super) fn rand_date(rng: &mut Rng) -> String {
    let y = rand_year(rng);
    let m = rng.range(1, 12);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let d = if m == 2 && leap && rng.chance(0.2) {
        29
    } else {
        rng.range(1, 28)
    };
    format!("{y:04}-{m:02}-{d:02}")
}

pub(super) fn rand_json(rng: &mut Rng, depth: u32) -> String {
    let w: &[u32] = if depth >= 3 {
        &[2, 2, 2, 6, 6, 0, 0]
    } else {
        &[1, 1, 1, 4, 4, 3, 4]
    };
    match rng.weighted(w) {
        0 => "null".into(),
        1 => "true".into(),
        2 => "false".into(),
        3 => {
            let choices = [
                rng.range(-1000, 1000).to_string(),
                (rng.next() as i64).to_string(),
                "1.50".into(),
                "-0".into(),
                "-0.001".into(),
                "1e10".into(),
                "2.5E-3".into(),
                "12345678901234567890.123456789".into(),
            ];
            rng.pick(&choices).clone()
        }
        4 => serde_json::to_string(&rand_text(rng, 12)).unwrap(),
        5 => {
            let n = rng.range(0, 4);
            let items: Vec<String> = (0..n).map(|_| rand_json(rng, depth + 1)).collect();
            format!("[{}]", items.join(", "))
        }
        _ => {
            let n = rng.range(0, 4);
            let items: Vec<String> = (0..n)
                .map(|_| {
                    format!(
                        "{}: {}",
                        serde_json::to_string(&rand_text(rng, 6)).unwrap(),
                        rand_json(rng, depth + 1)
                    )
                })
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

pub(super) fn rand_i32(rng: &mut Rng) -> i64 {
    match rng.weighted(&[2, 2, 2, 50, 44]) {
        0 => i64::from(i32::MIN),
        1 => i64::from(i32::MAX),
        2 => 0,
        3 => rng.range(-1000, 1000),
        _ => i64::from(rng.next() as i32),
    }
}

/// A non-NULL literal of type `ty`; `big` says whether a Big value may be TOAST-sized.
pub(super) fn value_lit(rng: &mut Rng, ty: Ty, stats: &mut Stats) -> String {
    match ty {
        Ty::I2 => match rng.weighted(&[2, 2, 2, 94]) {
            0 => "'-32768'::int2".into(),
            1 => "'32767'::int2".into(),
            2 => "'0'::int2".into(),
            _ => format!("'{}'::int2", rng.next() as i16),
        },
        Ty::I4 => format!("'{}'::int4", rand_i32(rng)),
        Ty::I8 => match rng.weighted(&[2, 2, 96]) {
            0 => "'-9223372036854775808'::int8".into(),
            1 => "'9223372036854775807'::int8".into(),
            _ => format!(
                "'{}'::int8",
                if rng.chance(0.5) {
                    rng.next() as i64
                } else {
                    rng.range(-100_000, 100_000)
                }
            ),
        },
        Ty::Bool => if rng.chance(0.5) { "true" } else { "false" }.into(),
        Ty::F4 => float_lit(f64::from(rand_f32(rng)), "float4"),
        Ty::F8 => float_lit(rand_f64(rng), "float8"),
        Ty::Num => rand_numeric(rng),
        Ty::Text => lit(&rand_text(rng, 60)),
        Ty::Varchar => format!("{}::varchar(40)", lit(&rand_text(rng, 40))),
        Ty::Bytea => {
            let n = if rng.chance(0.03) {
                stats.big_values += 1;
                rng.range(3000, 8000)
            } else if rng.chance(0.1) {
                0
            } else {
                rng.range(1, 40)
            };
            format!("'\\x{}'::bytea", rand_bytes(rng, n as usize))
        }
        Ty::Date => match rng.weighted(&[3, 3, 94]) {
            0 => "'infinity'::date".into(),
            1 => "'-infinity'::date".into(),
            _ => format!("'{}'::date", rand_date(rng)),
        },
        Ty::Ts => match rng.weighted(&[3, 3, 94]) {
            0 => "'infinity'::timestamp".into(),
            1 => "'-infinity'::timestamp".into(),
            _ => format!("'{} {}'::timestamp", rand_date(rng), rand_time(rng)),
        },
        Ty::Tstz => match rng.weighted(&[3, 3, 94]) {
            0 => "'infinity'::timestamptz".into(),
            1 => "'-infinity'::timestamptz".into(),
            _ => {
                let off_h = rng.range(-12, 14);
                let off_m = *rng.pick(&[0, 0, 0, 30, 45]);
                let sign = if off_h < 0 { '-' } else { '+' };
                format!(
                    "'{} {}{sign}{:02}:{off_m:02}'::timestamptz",
                    rand_date(rng),
                    rand_time(rng),
                    off_h.abs()
                )
            }
        },
        Ty::Uuid => {
            let h = format!("{:016x}{:016x}", rng.next(), rng.next());
            let u = format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            );
            match rng.below(3) {
                0 => format!("'{}'::uuid", u.to_uppercase()),
                1 => format!("'{{{u}}}'::uuid"),
                _ => format!("'{u}'::uuid"),
            }
        }
        Ty::Jsonb => format!("{}::jsonb", lit(&rand_json(rng, 0))),
        Ty::IntArr => {
            let elem = |rng: &mut Rng| {
                if rng.chance(0.2) {
                    "NULL".to_string()
                } else {
                    rand_i32(rng).to_string()
                }
            };
            match rng.weighted(&[10, 10, 80]) {
                0 => "'{}'::int4[]".into(),
                1 => {
                    let e: Vec<String> = (0..4).map(|_| elem(rng)).collect();
                    format!("'{{{{{},{}}},{{{},{}}}}}'::int4[]", e[0], e[1], e[2], e[3])
                }
                _ => {
                    let e: Vec<String> = (0..rng.range(1, 6)).map(|_| elem(rng)).collect();
                    format!("'{{{}}}'::int4[]", e.join(","))
                }
            }
        }
        Ty::TextArr => {
            let elem = |rng: &mut Rng| {
                if rng.chance(0.2) {
                    "NULL".to_string()
                } else {
                    lit(&rand_text(rng, 12))
                }
            };
            match rng.weighted(&[10, 10, 80]) {
                0 => "'{}'::text[]".into(),
                1 => {
                    let e: Vec<String> = (0..4).map(|_| elem(rng)).collect();
                    format!(
                        "ARRAY[ARRAY[{}, {}], ARRAY[{}, {}]]::text[]",
                        e[0], e[1], e[2], e[3]
                    )
                }
                _ => {
                    let e: Vec<String> = (0..rng.range(1, 5)).map(|_| elem(rng)).collect();
                    format!("ARRAY[{}]::text[]", e.join(", "))
                }
            }
        }
        Ty::Interval => format!(
            "'{} years {} mons {} days {}{:02}:{:02}:{:02}.{:06}'::interval",
            rng.range(-50, 50),
            rng.range(-20, 20),
            rng.range(-400, 400),
            if rng.chance(0.3) { "-" } else { "" },
            rng.range(0, 99),
            rng.range(0, 59),
            rng.range(0, 59),
            rng.range(0, 999_999)
        ),
        Ty::Big => {
            if rng.chance(0.6) {
                return lit(&rand_text(rng, 50));
            }
            stats.big_values += 1;
            let mut chunk = rand_text(rng, 30);
            if chunk.is_empty() {
                chunk.push('ü');
            }
            let target = rng.range(10_000, 20_000) as usize;
            let reps = target / chunk.chars().count() + 1;
            format!(
                "({} || repeat({}, {reps}))",
                lit(&rand_text(rng, 20)),
                lit(&chunk)
            )
        }
    }
}

/// A literal of type `ty`, NULL now and then.
pub(super) fn value_or_null(rng: &mut Rng, ty: Ty, stats: &mut Stats) -> String {
    if rng.chance(0.1) {
        "NULL".into()
    } else {
        value_lit(rng, ty, stats)
    }
}

/// A value computed from the row number `g` (and a per-statement salt), for bulk statements.
pub(super) fn bulk_expr(ty: Ty, salt: i64) -> String {
    match ty {
        Ty::I2 => format!("((g * 7 + {salt}) % 32767)::int2"),
        Ty::I4 => format!("(g * 31 - {salt})"),
        Ty::I8 => format!("(g::int8 * 1000000007 + {salt})"),
        Ty::Bool => format!("((g + {salt}) % 3 = 0)"),
        Ty::F4 => format!("((g + {salt}) / 7.0)::float4"),
        Ty::F8 => format!(
            "CASE WHEN g % 17 = 0 THEN 'NaN'::float8 WHEN g % 19 = 0 THEN '-Infinity'::float8 ELSE (g + {salt})::float8 / 3 END"
        ),
        Ty::Num => format!("round((g + {salt})::numeric / 7, g % 12)"),
        Ty::Text => format!("'bulk ' || g || ' ü😀 '' \\ ' || {salt}"),
        Ty::Varchar => format!("('v' || g || 'é' || {salt})::varchar(40)"),
        Ty::Bytea => format!("decode(lpad(to_hex(g * 65537 + {salt}), 16, '0'), 'hex')"),
        Ty::Date => format!("(date '2000-01-01' + (g * 37 + {salt}))"),
        Ty::Ts => format!(
            "(timestamp '1999-12-31 23:59:59' + (g + {salt}) * interval '1 day 1.000001 second')"
        ),
        Ty::Tstz => format!(
            "(timestamptz '2020-03-08 01:30:00-05' + (g + {salt}) * interval '37 minutes 0.5 seconds')"
        ),
        Ty::Uuid => format!("md5(g::text || '{salt}')::uuid"),
        Ty::Jsonb => format!(
            "jsonb_build_object('g', g, 's', 'ü' || {salt}, 'a', jsonb_build_array(g, null, 1.50))"
        ),
        Ty::IntArr => format!("ARRAY[g, NULL, -g - {salt}]"),
        Ty::TextArr => "ARRAY['a' || g, NULL, '\"q\"\\']::text[]".into(),
        Ty::Interval => format!("((g + {salt}) * interval '1 day 1 hour 1.5 second')"),
        Ty::Big => format!(
            "CASE WHEN (g + {salt}) % 40 = 0 THEN repeat('big ' || g || ' ü', 2500) WHEN g % 3 = 0 THEN NULL ELSE 'small ' || g END"
        ),
    }
}
