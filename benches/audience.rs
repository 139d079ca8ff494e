//! Audience identifiers per second: 1,000,000 synthetic members normalised, hashed and
//! hex-encoded as each platform wants them, on one core.
//!
//! - `audience/google_data_manager` and `audience/google_ads`: email, phone, first and
//!   last name (hashed), country and postal code (plain) per member.
//! - `audience/meta`: the same six (country and ZIP hashed too) plus city and region: email,
//!   phone, names and address, eight identifiers.
//! - `audience/meta_with_gender_and_birth_date`: those eight plus gender and the date of
//!   birth's `DOBY`/`DOBM`/`DOBD`: twelve.
//!
//! Each identifier is written into one reused request buffer (64 hex digits or the plain
//! value, comma-separated), as a destination building its request body would; the members'
//! raw values are built once, outside the timed loop, in a mix of shapes: US, UK, German and
//! French members, Gmail and other domains, numbers with and without `+`, titles, suffixes,
//! accents, ZIP+4, one value in twenty already a SHA-256 digest. The target is 1,000,000
//! members/s per core.
//!
//! Before criterion's wall-clock figures, each platform's pass is also timed in CPU time
//! (the thread's user + system time from `/proc/thread-self/stat`, 10 ms ticks, best of
//! three passes) and printed as members per CPU second: on a machine other work shares, wall
//! time counts the waits for a core, CPU time does not. Run with
//! `cargo bench --bench audience --features audience`;
//! `RSE_BENCH_MEMBERS` sets a smaller count, `--features bench-mimalloc` measures with
//! mimalloc.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use rse::connectors::audience::{
    GoogleAdsNormalizer, GoogleDataManagerNormalizer, IdentifierKind, MetaNormalizer, Normalized, Normalizer,
    RowContext,
};

#[cfg(feature = "bench-mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn members_count() -> usize {
    std::env::var("RSE_BENCH_MEMBERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

/// One member's raw values, as a warehouse row holds them.
struct Member {
    email: String,
    phone: String,
    first_name: String,
    last_name: String,
    country: &'static str,
    postal_code: String,
    city: &'static str,
    region: &'static str,
    gender: &'static str,
    birth_date: String,
}

const FIRST: &[&str] = &["Ada", "Mrs. Jane", "José", "Dr. Mary Ann", "Zoë", "Jean-Luc", "  Omar ", "Li"];
const LAST: &[&str] = &["Lovelace", "Doe Jr.", "García", "O'Brien", "Müller", "Smith III", "Nguyen", "Da Silva"];
const DOMAINS: &[&str] = &["gmail.com", "Example.com", "googlemail.com", "yahoo.co.uk", "web.de"];

fn member(i: usize) -> Member {
    let first = FIRST[i % FIRST.len()];
    let last = LAST[(i / 3) % LAST.len()];
    let local: String = first.split_whitespace().last().unwrap().chars().filter(char::is_ascii_alphabetic).collect();
    let mut email = format!(" {local}.{}+promo{}@{} ", &last[..3], i % 97, DOMAINS[i % DOMAINS.len()]);
    let n = i % 10_000;
    let (country, mut phone, postal_code, city, region) = match i % 4 {
        0 => (
            "US",
            format!("({}) 555-{n:04}", 200 + i % 700),
            format!("{:05}-{:04}", 10_000 + i % 89_999, n),
            "New York",
            "New York",
        ),
        1 => ("gb", format!("+44 (0)20 7946 {n:04}"), format!("SW1A {}AA", i % 10), "London", "Greater London"),
        2 => ("DE", format!("030 {:07}", i % 10_000_000), format!("{:05}", 10_000 + i % 89_999), "Berlin", "Berlin"),
        _ => (
            "fr",
            format!("0033 1 23 45 {:02} {:02}", n / 100, n % 100),
            format!("75{:03}", i % 1000),
            "Paris",
            "Île-de-France",
        ),
    };
    if i % 20 == 7 {
        // A digest the source already holds (uppercase hex).
        email = format!("{:064X}", i);
    }
    if i % 20 == 13 {
        phone = format!("{:064x}", i);
    }
    Member {
        email,
        phone,
        first_name: first.to_owned(),
        last_name: last.to_owned(),
        country,
        postal_code,
        city,
        region,
        gender: if i.is_multiple_of(2) { "F" } else { "male" },
        birth_date: format!("{}-{:02}-{:02}", 1940 + i % 60, 1 + i % 12, 1 + i % 28),
    }
}

/// Appends one identifier to the request buffer.
fn write(out: &mut String, id: Option<Normalized>) {
    if let Some(id) = id {
        id.write_hex(out);
        out.push(',');
    }
}

/// Google: six identifiers per member.
fn google(normalizer: &dyn Normalizer, members: &[Member], out: &mut String) -> usize {
    let mut written = 0;
    for m in members {
        out.clear();
        let row = RowContext { country: Some(m.country) };
        for (kind, raw) in [
            (IdentifierKind::Email, m.email.as_str()),
            (IdentifierKind::Phone, &m.phone),
            (IdentifierKind::FirstName, &m.first_name),
            (IdentifierKind::LastName, &m.last_name),
            (IdentifierKind::Country, m.country),
            (IdentifierKind::PostalCode, &m.postal_code),
        ] {
            write(out, normalizer.normalize(kind, raw, &row).unwrap());
        }
        written += out.len();
    }
    written
}

/// Meta: email, phone, names and address (city, region, ZIP, country): eight identifiers;
/// with `more`, also gender and the date of birth as three keys (twelve).
fn meta(members: &[Member], out: &mut String, more: bool) -> usize {
    let normalizer = MetaNormalizer;
    let mut written = 0;
    for m in members {
        out.clear();
        let row = RowContext { country: Some(m.country) };
        for (kind, raw) in [
            (IdentifierKind::Email, m.email.as_str()),
            (IdentifierKind::Phone, &m.phone),
            (IdentifierKind::FirstName, &m.first_name),
            (IdentifierKind::LastName, &m.last_name),
            (IdentifierKind::Country, m.country),
            (IdentifierKind::PostalCode, &m.postal_code),
            (IdentifierKind::City, m.city),
            (IdentifierKind::Region, m.region),
        ] {
            write(out, normalizer.normalize(kind, raw, &row).unwrap());
        }
        if more {
            write(out, normalizer.normalize(IdentifierKind::Gender, m.gender, &row).unwrap());
            for part in MetaNormalizer::birth_parts(&m.birth_date).unwrap().unwrap() {
                write(out, Some(Normalized::Hashed(part)));
            }
        }
        written += out.len();
    }
    written
}

/// This thread's user + system CPU time, in seconds (clock ticks of 1/100 s).
fn thread_cpu_seconds() -> f64 {
    let text = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // The command may hold spaces: the fields start after its closing parenthesis.
    let fields: Vec<&str> = text[text.rfind(')').unwrap() + 2..].split_whitespace().collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}

/// Prints the best of three passes of `pass` in members per CPU second.
fn cpu_rate(name: &str, count: usize, mut pass: impl FnMut() -> usize) {
    let best = (0..3)
        .map(|_| {
            let start = thread_cpu_seconds();
            black_box(pass());
            thread_cpu_seconds() - start
        })
        .fold(f64::INFINITY, f64::min);
    println!("audience/{name}: {:.0} members per CPU second ({count} members, {best:.2} s)", count as f64 / best);
}

fn bench_audience(c: &mut Criterion) {
    let count = members_count();
    let members: Vec<Member> = (0..count).map(member).collect();
    let mut out = String::with_capacity(1024);
    cpu_rate("google_data_manager", count, || google(&GoogleDataManagerNormalizer, &members, &mut out));
    cpu_rate("google_ads", count, || google(&GoogleAdsNormalizer, &members, &mut out));
    cpu_rate("meta", count, || meta(&members, &mut out, false));
    cpu_rate("meta_with_gender_and_birth_date", count, || meta(&members, &mut out, true));
    let mut group = c.benchmark_group("audience");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(15))
        .throughput(Throughput::Elements(count as u64));
    group.bench_function("google_data_manager", |b| {
        b.iter(|| black_box(google(&GoogleDataManagerNormalizer, &members, &mut out)))
    });
    group.bench_function("google_ads", |b| b.iter(|| black_box(google(&GoogleAdsNormalizer, &members, &mut out))));
    group.bench_function("meta", |b| b.iter(|| black_box(meta(&members, &mut out, false))));
    group.bench_function("meta_with_gender_and_birth_date", |b| b.iter(|| black_box(meta(&members, &mut out, true))));
    group.finish();
}

criterion_group!(benches, bench_audience);
criterion_main!(benches);
