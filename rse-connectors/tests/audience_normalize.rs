//! The per-platform normalisers against the platforms' own examples: each golden vector is
//! an input and the normalised text (or SHA-256) the cited page gives for it.
//!
//! Sources, cited beside the vectors as [DM], [ADS], [ADS-REF], [ADS-HELP], [META], [META-CA]:
//!
//! - [DM] Google Data Manager API, "Format user data",
//!   <https://developers.google.com/data-manager/api/devguides/concepts/formatting>
//!   (newest snapshot, with the Gmail `+tag` rule), and the `AddressInfo` comments of
//!   `google/ads/datamanager/v1/user_data.proto` (lowercase, no punctuation).
//! - [ADS] Google Ads API, "Customer Match",
//!   <https://developers.google.com/google-ads/api/docs/remarketing/audience-types/customer-match>
//!   (trim, lowercase; Gmail dots need not be removed).
//! - [ADS-REF] Google Ads API reference, `OfflineUserAddressInfo`,
//!   <https://developers.google.com/google-ads/api/reference/rpc/v25/OfflineUserAddressInfo>.
//! - [ADS-HELP] Google Ads Help, "Format your customer data file" (Customer Match),
//!   <https://support.google.com/google-ads/answer/7659867>: no prefixes (`Mrs.`) or
//!   suffixes (`Jr.`), US ZIP as `94303` or `94303-5300`, no extensions elsewhere (`WC2H 8LG`).
//! - [META] Meta Conversions API, "Customer information parameters",
//!   <https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters>:
//!   inputs, normalised forms and expected SHA-256 hex.
//! - [META-CA] Meta Marketing API, Custom Audiences, "Hashing and normalizing data",
//!   <https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences#hash>
//!   (the multi-key table: EMAIL, PHONE, GEN, DOBY/DOBM/DOBD, FN, LN, CT, ST, ZIP, COUNTRY,
//!   MADID, EXTERN_ID).
#![cfg(feature = "audience")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/contracts.rs"]
mod contracts;

use proptest::prelude::*;
use rse_connectors::audience::{
    GoogleAdsNormalizer, GoogleDataManagerNormalizer, IdentifierKind, InvalidIdentifier, MetaNormalizer, Normalized,
    Normalizer, RowContext,
};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use IdentifierKind::*;

const DM: GoogleDataManagerNormalizer = GoogleDataManagerNormalizer;
const ADS: GoogleAdsNormalizer = GoogleAdsNormalizer;
const META: MetaNormalizer = MetaNormalizer;

fn row(country: Option<&str>) -> RowContext<'_> {
    RowContext { country }
}

fn run(n: &dyn Normalizer, kind: IdentifierKind, raw: &str, country: Option<&str>) -> Option<Normalized> {
    n.normalize(kind, raw, &row(country)).unwrap_or_else(|e| panic!("{} {kind}: {raw:?} refused: {e}", n.platform()))
}

fn sha(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// `raw` normalises to the text `form`, hashed.
#[track_caller]
fn hashes_as(n: &dyn Normalizer, kind: IdentifierKind, raw: &str, country: Option<&str>, form: &str) {
    assert_eq!(
        run(n, kind, raw, country),
        Some(Normalized::Hashed(sha(form))),
        "{} {kind}: {raw:?} should hash as {form:?}",
        n.platform()
    );
}

/// `raw` hashes to the lowercase hex `hex`.
#[track_caller]
fn hashes_to_hex(n: &dyn Normalizer, kind: IdentifierKind, raw: &str, country: Option<&str>, hex: &str) {
    let got = run(n, kind, raw, country).expect("an identifier");
    assert_eq!(got.hex(), hex, "{} {kind}: {raw:?}", n.platform());
}

#[track_caller]
fn plain_as(n: &dyn Normalizer, kind: IdentifierKind, raw: &str, country: Option<&str>, plain: &str) {
    assert_eq!(
        run(n, kind, raw, country),
        Some(Normalized::Plain(plain.to_owned())),
        "{} {kind}: {raw:?}",
        n.platform()
    );
}

/// `raw` is refused, for `kind`, with a reason that does not repeat the value.
#[track_caller]
fn refused(n: &dyn Normalizer, kind: IdentifierKind, raw: &str, country: Option<&str>) -> InvalidIdentifier {
    let error = n
        .normalize(kind, raw, &row(country))
        .expect_err(&format!("{} {kind}: {raw:?} should be refused", n.platform()));
    assert_eq!(error.kind, kind);
    assert!(!error.reason.is_empty());
    let shown = format!("{error} {error:?}");
    // (One or two characters may well occur in any sentence.)
    if raw.trim().chars().count() >= 3 {
        assert!(!shown.contains(raw.trim()), "the reason repeats the value: {shown}");
    }
    error
}

// ---- Email ----

#[test]
fn data_manager_gmail_drops_dots_and_plus_tag() {
    // [DM]: cloudy.sanfrancisco+shopping@gmail.com → cloudysanfrancisco@gmail.com.
    hashes_as(&DM, Email, "cloudy.sanfrancisco+shopping@gmail.com", None, "cloudysanfrancisco@gmail.com");
    // [DM] (saas-contracts §3b's reading of it): googlemail.com too, case and whitespace.
    hashes_as(&DM, Email, "  Jane.Doe+promo@GoogleMail.com ", None, "janedoe@googlemail.com");
    hashes_as(&DM, Email, "J a.n.e@gmail.com", None, "jane@gmail.com");
}

#[test]
fn data_manager_other_domains_keep_dots_and_tags() {
    // [DM]: user.name+NYC@Example.com → user.name+nyc@example.com.
    hashes_as(&DM, Email, "user.name+NYC@Example.com", None, "user.name+nyc@example.com");
    // A gmail look-alike domain is not Gmail.
    hashes_as(&DM, Email, "a.b+c@gmail.co", None, "a.b+c@gmail.co");
    hashes_as(&DM, Email, "a.b+c@mail.gmail.com", None, "a.b+c@mail.gmail.com");
}

#[test]
fn google_ads_applies_no_gmail_rule() {
    // [ADS]: trim and lowercase; Gmail addresses are accepted with their dots.
    hashes_as(&ADS, Email, " Cloudy.SanFrancisco+shopping@gmail.com ", None, "cloudy.sanfrancisco+shopping@gmail.com");
    hashes_as(&ADS, Email, "user.name+NYC@Example.com", None, "user.name+nyc@example.com");
}

#[test]
fn meta_email_matches_the_documented_digest() {
    // [META]: John_Smith@gmail.com → john_smith@gmail.com → 62a14e44….
    hashes_to_hex(
        &META,
        Email,
        "  John_Smith@gmail.com ",
        None,
        "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f",
    );
    // [META-CA]: no Gmail rule on Meta.
    hashes_as(&META, Email, "Jane.Doe+promo@gmail.com", None, "jane.doe+promo@gmail.com");
}

#[test]
fn email_without_exactly_one_at_is_refused() {
    for n in [&DM as &dyn Normalizer, &ADS, &META] {
        for raw in ["jane.doe.example.com", "jane@doe@example.com", "@example.com", "jane.doe@", "  @  ", "@@"] {
            let error = refused(n, Email, raw, None);
            assert!(error.reason.contains('@'), "the reason says what is expected: {error}");
        }
    }
    // Nothing left of a Gmail local part once dots and the tag are gone.
    refused(&DM, Email, "..+shopping@gmail.com", None);
}

// ---- Phone ----

#[test]
fn google_phone_is_e164_with_plus() {
    for n in [&DM as &dyn Normalizer, &ADS] {
        // [DM]: the US number (800)555-0100 → +18005550100.
        hashes_as(n, Phone, "(800)555-0100", Some("US"), "+18005550100");
        // saas-contracts §3b: US (415) 555-0199 → +14155550199.
        hashes_as(n, Phone, "(415) 555-0199", Some("us"), "+14155550199");
        // Written with its country code: the row's country does not matter.
        hashes_as(n, Phone, "+1 415-555-0199", Some("GB"), "+14155550199");
        hashes_as(n, Phone, "+1 415-555-0199", None, "+14155550199");
        hashes_as(n, Phone, "0044 20 7946 0958", None, "+442079460958");
        // A national number's trunk prefix 0 is dropped before the calling code.
        hashes_as(n, Phone, "020 7946 0958", Some("GB"), "+442079460958");
        hashes_as(n, Phone, "030/1234567", Some("de"), "+49301234567");
        hashes_as(n, Phone, "01 23 45 67 89", Some("FR"), "+33123456789");
        // … except in Italy, where the 0 belongs to the number.
        hashes_as(n, Phone, "06 1234 5678", Some("IT"), "+390612345678");
        // North America's trunk prefix is 1.
        hashes_as(n, Phone, "1-415-555-0199", Some("CA"), "+14155550199");
        // `+44 (0)20 …`: the bracketed trunk 0 goes.
        hashes_as(n, Phone, "+44 (0)20 7946 0958", None, "+442079460958");
        // International digits without + in the row's country.
        hashes_as(n, Phone, "447911123456", Some("GB"), "+447911123456");
        hashes_as(n, Phone, "07911 123456", Some("GB"), "+447911123456");
    }
    // Google's reference E.164 digest of the contracts' toy number (GA example files).
    hashes_to_hex(
        &DM,
        Phone,
        "+1 (415) 555-0199",
        None,
        "e8d4612843461999eefd96a316ed1b97a142e152473aebfe6cb220d6f484b109",
    );
}

#[test]
fn meta_phone_is_digits_with_country_code_and_no_plus() {
    // [META]: the US number (650)555-1212 → 16505551212 → e323ec62….
    hashes_to_hex(
        &META,
        Phone,
        "(650)555-1212",
        Some("US"),
        "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176",
    );
    hashes_as(&META, Phone, "(415) 555-0199", Some("US"), "14155550199");
    // [META-CA] / Salesforce help 000391108: +447123456… is sent as 447123456…, never with +.
    hashes_as(&META, Phone, "+44 7911 123456", None, "447911123456");
    hashes_as(&META, Phone, "07911 123456", Some("gb"), "447911123456");
    // No row country, no +: the digits already carry the country code, leading zeros go.
    hashes_as(&META, Phone, "16505551212", None, "16505551212");
    hashes_as(&META, Phone, "16505551212", Some(" "), "16505551212");
    hashes_as(&META, Phone, "0016505551212", None, "16505551212");
}

#[test]
fn phones_that_cannot_be_numbers_are_refused() {
    for n in [&DM as &dyn Normalizer, &ADS, &META] {
        refused(n, Phone, "415-555-0199 ext. 12", Some("US"));
        refused(n, Phone, "1-800-FLOWERS", Some("US"));
        refused(n, Phone, "12345", Some("US"));
        refused(n, Phone, "+1234567890123456", None);
        refused(n, Phone, "+0 415 555 0199", None);
        refused(n, Phone, "415 555 0199", Some("ZZ"));
    }
    // Google: a national number without a country would be accepted and never match.
    let error = refused(&DM, Phone, "(415) 555-0199", None);
    assert!(error.reason.contains("country"), "{error}");
    refused(&DM, Phone, "(415) 555-0199", Some("  "));
    refused(&ADS, Phone, "4155550199", None);
}

// ---- Names ----

#[test]
fn google_names_drop_titles_suffixes_and_punctuation() {
    for n in [&DM as &dyn Normalizer, &ADS] {
        // [DM] / [ADS-HELP]: no prefixes such as Mrs., no suffixes such as Jr.
        hashes_as(n, FirstName, "Mrs. Jane", None, "jane");
        hashes_as(n, FirstName, "  DR  Mary   Ann ", None, "mary ann");
        hashes_as(n, LastName, "Doe Jr.", None, "doe");
        hashes_as(n, LastName, "Smith, Jr. PhD", None, "smith");
        hashes_as(n, LastName, "Henry III", None, "henry");
        // [DM] proto / [ADS-REF]: lowercase, no punctuation, extra spaces removed.
        hashes_as(n, LastName, "O'Brien-Smith", None, "obriensmith");
        hashes_as(n, FirstName, "Jean-Luc", None, "jeanluc");
        // Letters outside a–z stay, lowercased.
        hashes_as(n, LastName, "Müller", None, "müller");
        hashes_as(n, FirstName, "ÉLODIE", None, "élodie");
        // A title alone is a name, not nothing.
        hashes_as(n, FirstName, "Miss", None, "miss");
        hashes_as(n, LastName, "Jr", None, "jr");
        // The contracts' toy member (GA example files).
        hashes_to_hex(n, FirstName, "Ada", None, "fdee430d40bd57deeac186cd9790033d0f06f909a8806e7ce6e717ab7c7d5029");
        hashes_to_hex(
            n,
            LastName,
            " Lovelace ",
            None,
            "fb1e7ec987523d2cb9e022cec1d6ae7c99dc46edfae4fe51254025fe4bea571f",
        );
        refused(n, FirstName, "--- ...", None);
    }
}

#[test]
fn meta_names_and_cities_are_letters_only_in_utf8() {
    // [META]: Mary → mary; 정 → 정; Valéry → valéry (UTF-8 kept), with their digests.
    let expected = [
        ("Mary", "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"),
        ("정", "8fa8cd9c440be61d0151429310034083132b35975c4bea67fdd74158eb51db14"),
        ("Valéry", "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c"),
    ];
    for (raw, hex) in expected {
        hashes_to_hex(&META, FirstName, raw, None, hex);
        hashes_to_hex(&META, LastName, raw, None, hex);
    }
    // [META-CA]: lowercase, no punctuation, no spaces.
    hashes_as(&META, LastName, "O'Brien-Smith", None, "obriensmith");
    hashes_as(&META, FirstName, "Mary Ann 2nd", None, "maryannnd");
    // [META]: city examples paris, london, newyork.
    hashes_as(&META, City, "New York", Some("US"), "newyork");
    hashes_as(&META, City, "  Paris ", Some("FR"), "paris");
    hashes_as(&META, City, "São Paulo", Some("BR"), "sãopaulo");
    refused(&META, FirstName, "1234", None);
}

// ---- Region, postal code, country ----

#[test]
fn meta_region_uses_us_state_codes() {
    // [META] / [META-CA]: the 2-character ANSI code, lowercase (examples az, ca).
    hashes_as(&META, Region, "AZ", Some("US"), "az");
    hashes_as(&META, Region, "California", Some("US"), "ca");
    hashes_as(&META, Region, "new york", None, "ny");
    hashes_as(&META, Region, "N.Y.", None, "ny");
    // Elsewhere: lowercase, no punctuation, no spaces.
    hashes_as(&META, Region, "Île-de-France", Some("FR"), "îledefrance");
    hashes_as(&META, Region, "Georgia", Some("GE"), "georgia");
}

#[test]
fn google_postal_codes_are_plain() {
    for n in [&DM as &dyn Normalizer, &ADS] {
        // [ADS-HELP] / [DM]: 5 digits or ZIP+4 in the US.
        plain_as(n, PostalCode, " 94303 ", Some("US"), "94303");
        plain_as(n, PostalCode, "94303-5300", Some("us"), "94303-5300");
        plain_as(n, PostalCode, "943035300", Some("US"), "94303-5300");
        // Elsewhere as given (no extension to drop), trimmed.
        plain_as(n, PostalCode, " WC2H  8LG ", Some("GB"), "WC2H 8LG");
        plain_as(n, PostalCode, "94045", None, "94045");
        refused(n, PostalCode, "9430", Some("US"));
        refused(n, PostalCode, "94303-53", Some("US"));
    }
}

#[test]
fn meta_zip_is_hashed_lowercase_and_us_five_digits() {
    // [META]: US 94035; UK m11ae; lowercase, no spaces, no dash; US first 5 digits.
    hashes_as(&META, PostalCode, "94035", Some("US"), "94035");
    hashes_as(&META, PostalCode, "94035-1234", Some("US"), "94035");
    hashes_as(&META, PostalCode, "94035-1234", None, "94035");
    hashes_as(&META, PostalCode, "M1 1AE", Some("GB"), "m11ae");
    hashes_as(&META, PostalCode, "75018", Some("FR"), "75018");
    refused(&META, PostalCode, "9403", Some("US"));
    refused(&META, PostalCode, "75018 #2", Some("FR"));
}

#[test]
fn countries_are_alpha_2() {
    for n in [&DM as &dyn Normalizer, &ADS] {
        // [DM] region_code / [ADS-REF] country_code: ISO-3166-1 alpha-2, unhashed.
        plain_as(n, Country, "us", None, "US");
        plain_as(n, Country, " Gb ", None, "GB");
    }
    // [META]: United States → us → 79adb2a2…; any case in.
    hashes_to_hex(&META, Country, "US", None, "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621");
    hashes_as(&META, Country, "De", None, "de");
    for n in [&DM as &dyn Normalizer, &ADS, &META] {
        for raw in ["USA", "United States", "u", "Z1", "ZZ"] {
            refused(n, Country, raw, None);
        }
    }
}

// ---- Date of birth, gender, mobile and external ids ----

#[test]
fn meta_birth_date_splits_into_doby_dobm_dobd() {
    // [META-CA]: DOBY YYYY, DOBM MM (01–12), DOBD DD (01–31); [META] db example 2/16/1997.
    let parts = MetaNormalizer::birth_parts("1997-02-16").unwrap().unwrap();
    assert_eq!(parts, [sha("1997"), sha("02"), sha("16")]);
    assert_eq!(MetaNormalizer::birth_parts("19970216").unwrap(), Some(parts));
    assert_eq!(MetaNormalizer::birth_parts("1997/02/16").unwrap(), Some(parts));
    assert_eq!(MetaNormalizer::birth_parts("1997-02-16T00:00:00Z").unwrap(), Some(parts));
    assert_eq!(MetaNormalizer::birth_parts("  ").unwrap(), None);
    for raw in ["16/02/1997", "1997-02-30", "1899-12-31", "2999-01-01", "1997-13-01", "yesterday"] {
        let error = MetaNormalizer::birth_parts(raw).unwrap_err();
        assert_eq!(error.kind, DateOfBirth);
        assert!(!error.reason.contains(raw), "{error}");
    }
    let digest = "A".repeat(64);
    assert!(MetaNormalizer::birth_parts(&digest).is_err(), "a digest cannot be split");
    // Custom Audiences have no single date-of-birth key.
    assert_eq!(run(&META, DateOfBirth, "1997-02-16", None), None);
    refused(&META, DateOfBirth, "16/02/1997", None);
}

#[test]
fn meta_gender_is_m_or_f() {
    // [META-CA]: m for male, f for female.
    hashes_as(&META, Gender, "F", None, "f");
    hashes_as(&META, Gender, "female", None, "f");
    hashes_as(&META, Gender, "Male", None, "m");
    refused(&META, Gender, "unknown", None);
}

#[test]
fn kinds_google_does_not_match_on_are_skipped() {
    for n in [&DM as &dyn Normalizer, &ADS] {
        for kind in [City, Region, DateOfBirth, Gender] {
            assert_eq!(run(n, kind, "Anything at all", Some("US")), None, "{kind}");
        }
    }
}

#[test]
fn mobile_and_external_ids_are_plain() {
    // [META-CA]: MADID lowercase, hyphens kept, unhashed; EXTERN_ID unhashed.
    plain_as(&META, MobileId, " AECE52E7-03EE-455A-B3C4-E57283966239 ", None, "aece52e7-03ee-455a-b3c4-e57283966239");
    // [DM] MobileData / [ADS]: mobile ids unhashed, as given.
    plain_as(&DM, MobileId, "AECE52E7-03EE-455A-B3C4-E57283966239", None, "AECE52E7-03EE-455A-B3C4-E57283966239");
    plain_as(&ADS, MobileId, " aece52e7-03ee ", None, "aece52e7-03ee");
    for n in [&DM as &dyn Normalizer, &ADS, &META] {
        plain_as(n, ExternalId, "  CRM-0042 ", None, "CRM-0042");
    }
}

// ---- Pre-hashed values, blanks, hex ----

#[test]
fn a_64_hex_value_is_a_digest_passed_through() {
    let digest = sha("jane@example.com");
    let lower = Normalized::Hashed(digest).hex();
    let upper = lower.to_ascii_uppercase();
    for n in [&DM as &dyn Normalizer, &ADS, &META] {
        for kind in [Email, Phone, FirstName, LastName] {
            assert_eq!(run(n, kind, &upper, Some("US")), Some(Normalized::Hashed(digest)), "{} {kind}", n.platform());
            assert_eq!(run(n, kind, &format!(" {lower} "), None), Some(Normalized::Hashed(digest)));
        }
    }
    for kind in [City, Region, PostalCode, Country, Gender] {
        assert_eq!(run(&META, kind, &upper, None), Some(Normalized::Hashed(digest)), "{kind}");
    }
    // 63 hex digits are not a digest: an email without @ is refused, not passed through.
    refused(&DM, Email, &lower[1..], None);
    // A plain kind never takes a digest for its value.
    refused(&DM, Country, &upper, None);
    plain_as(&META, ExternalId, &upper, None, &upper);
}

#[test]
fn blank_values_are_no_identifier() {
    for n in [&DM as &dyn Normalizer, &ADS, &META] {
        for kind in IdentifierKind::ALL {
            for raw in ["", "   ", "\t\n"] {
                assert_eq!(n.normalize(kind, raw, &row(Some("US"))), Ok(None), "{} {kind}", n.platform());
            }
        }
    }
}

#[test]
fn hex_is_lowercase_and_plain_values_are_written_as_they_are() {
    let hashed = Normalized::Hashed(sha("abc"));
    assert_eq!(hashed.hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    let mut out = String::from("x:");
    hashed.write_hex(&mut out);
    Normalized::Plain("US".into()).write_hex(&mut out);
    assert_eq!(out, "x:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015adUS");
    assert_eq!(hashed.digest(), Some(&sha("abc")));
    assert_eq!(Normalized::Plain("US".into()).plain(), Some("US"));
}

/// The Google contract files' example member (`ada@example.com`, `+14155550199`, Ada
/// Lovelace, US 94045) is what both Google normalisers make of the raw row.
#[test]
fn google_contract_examples_match() {
    let read = |file: &str| -> Json {
        let path = contracts::contracts_dir().join("google/examples").join(file);
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
            .unwrap()
    };
    let us = Some("US");
    let dm = read("datamanager.ingest.request.json");
    let ids = &dm["audienceMembers"][0]["userData"]["userIdentifiers"];
    let address = &ids[2]["address"];
    let hex = |kind, raw| run(&DM, kind, raw, us).unwrap().hex();
    assert_eq!(ids[0]["emailAddress"], hex(Email, " Ada@Example.com"));
    assert_eq!(ids[1]["phoneNumber"], hex(Phone, "(415) 555-0199"));
    assert_eq!(address["givenName"], hex(FirstName, "Ada"));
    assert_eq!(address["familyName"], hex(LastName, "Lovelace"));
    assert_eq!(address["regionCode"], hex(Country, "us"));
    assert_eq!(address["postalCode"], hex(PostalCode, "94045"));

    let ads = read("googleads.addOperations.request.json");
    let ids = &ads["operations"][0]["create"]["userIdentifiers"];
    let address = &ids[2]["addressInfo"];
    let hex = |kind, raw| run(&ADS, kind, raw, us).unwrap().hex();
    assert_eq!(ids[0]["hashedEmail"], hex(Email, "ADA@example.com "));
    assert_eq!(ids[1]["hashedPhoneNumber"], hex(Phone, "+1 415 555 0199"));
    assert_eq!(address["hashedFirstName"], hex(FirstName, "Ms. Ada"));
    assert_eq!(address["hashedLastName"], hex(LastName, "Lovelace"));
    assert_eq!(address["countryCode"], hex(Country, "US"));
    assert_eq!(address["postalCode"], hex(PostalCode, "94045"));
}

// ---- Properties ----

fn normalizers() -> [&'static dyn Normalizer; 3] {
    [&DM, &ADS, &META]
}

const COUNTRIES: [Option<&str>; 7] = [None, Some(""), Some("US"), Some("gb"), Some("IT"), Some("ru"), Some("ZZ")];

/// Strings shaped like identifiers, and anything at all.
fn values() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,40}",
        "[ +0-9()./-]{0,24}",
        "[ A-Za-z.@+_-]{0,30}@[ A-Za-z.]{0,15}",
        "[ A-Za-zÀ-ÿ'.,-]{0,30}",
        "[0-9]{4}[-/.]?[0-9]{2}[-/.]?[0-9]{2}",
        "[0-9a-fA-F]{64}",
    ]
}

proptest! {
    /// Every normaliser takes any string without panicking; a refusal never repeats the
    /// value; a plain identifier normalises to itself; a digest's hex passes through as
    /// the same digest.
    #[test]
    fn normalising_is_total_idempotent_and_quiet(raw in values()) {
        for n in normalizers() {
            for kind in IdentifierKind::ALL {
                for country in COUNTRIES {
                    let context = row(country);
                    match n.normalize(kind, &raw, &context) {
                        Ok(None) => {}
                        Ok(Some(Normalized::Plain(plain))) => {
                            prop_assert_eq!(
                                n.normalize(kind, &plain, &context),
                                Ok(Some(Normalized::Plain(plain.clone())))
                            );
                        }
                        Ok(Some(hashed @ Normalized::Hashed(_))) => {
                            prop_assert_eq!(n.normalize(kind, &hashed.hex(), &context), Ok(Some(hashed)));
                        }
                        Err(error) => {
                            prop_assert_eq!(error.kind, kind);
                            let value = raw.trim();
                            if value.chars().count() >= 6 {
                                prop_assert!(!error.reason.contains(value), "{} {}: {}", n.platform(), kind, error);
                            }
                        }
                    }
                }
            }
            let _ = MetaNormalizer::birth_parts(&raw);
        }
    }
}
