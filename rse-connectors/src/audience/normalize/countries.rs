//! ISO 3166-1 alpha-2 codes with their ITU-T E.164 calling codes and national trunk prefixes.
//!
//! Written from the public ISO 3166-1 list and the ITU's assignment of country codes. The
//! trunk prefix is what a number is dialled with inside its country and dropped from abroad:
//! `0` in most countries, `1` across the North American Numbering Plan, `8` in Russia,
//! Kazakhstan and some neighbours (Lithuania is moving from `8` to `0`: both are accepted),
//! `06` in Hungary, none in Italy, San Marino and the Vatican (the leading `0` belongs to the
//! number there), in Côte d'Ivoire, the Republic of the Congo and Gabon (whose numbers start
//! with `0` since their renumbering) and in Mexico (dropped in 2019). A prefix entry in a
//! country without one is harmless when its numbers never start with it. `XK` (Kosovo) is a
//! user-assigned code in common use, accepted as a country.

/// `(alpha-2 code, calling code, trunk prefixes)`, sorted by code.
const COUNTRIES: &[([u8; 2], &str, &[&str])] = &[
    (*b"AD", "376", &["0"]),
    (*b"AE", "971", &["0"]),
    (*b"AF", "93", &["0"]),
    (*b"AG", "1", &["1"]),
    (*b"AI", "1", &["1"]),
    (*b"AL", "355", &["0"]),
    (*b"AM", "374", &["0"]),
    (*b"AO", "244", &["0"]),
    (*b"AQ", "672", &["0"]),
    (*b"AR", "54", &["0"]),
    (*b"AS", "1", &["1"]),
    (*b"AT", "43", &["0"]),
    (*b"AU", "61", &["0"]),
    (*b"AW", "297", &["0"]),
    (*b"AX", "358", &["0"]),
    (*b"AZ", "994", &["0"]),
    (*b"BA", "387", &["0"]),
    (*b"BB", "1", &["1"]),
    (*b"BD", "880", &["0"]),
    (*b"BE", "32", &["0"]),
    (*b"BF", "226", &["0"]),
    (*b"BG", "359", &["0"]),
    (*b"BH", "973", &["0"]),
    (*b"BI", "257", &["0"]),
    (*b"BJ", "229", &["0"]),
    (*b"BL", "590", &["0"]),
    (*b"BM", "1", &["1"]),
    (*b"BN", "673", &["0"]),
    (*b"BO", "591", &["0"]),
    (*b"BQ", "599", &["0"]),
    (*b"BR", "55", &["0"]),
    (*b"BS", "1", &["1"]),
    (*b"BT", "975", &["0"]),
    (*b"BV", "47", &["0"]),
    (*b"BW", "267", &["0"]),
    (*b"BY", "375", &["8"]),
    (*b"BZ", "501", &["0"]),
    (*b"CA", "1", &["1"]),
    (*b"CC", "61", &["0"]),
    (*b"CD", "243", &["0"]),
    (*b"CF", "236", &["0"]),
    (*b"CG", "242", &[]),
    (*b"CH", "41", &["0"]),
    (*b"CI", "225", &[]),
    (*b"CK", "682", &["0"]),
    (*b"CL", "56", &["0"]),
    (*b"CM", "237", &["0"]),
    (*b"CN", "86", &["0"]),
    (*b"CO", "57", &["0"]),
    (*b"CR", "506", &["0"]),
    (*b"CU", "53", &["0"]),
    (*b"CV", "238", &["0"]),
    (*b"CW", "599", &["0"]),
    (*b"CX", "61", &["0"]),
    (*b"CY", "357", &["0"]),
    (*b"CZ", "420", &["0"]),
    (*b"DE", "49", &["0"]),
    (*b"DJ", "253", &["0"]),
    (*b"DK", "45", &["0"]),
    (*b"DM", "1", &["1"]),
    (*b"DO", "1", &["1"]),
    (*b"DZ", "213", &["0"]),
    (*b"EC", "593", &["0"]),
    (*b"EE", "372", &["0"]),
    (*b"EG", "20", &["0"]),
    (*b"EH", "212", &["0"]),
    (*b"ER", "291", &["0"]),
    (*b"ES", "34", &["0"]),
    (*b"ET", "251", &["0"]),
    (*b"FI", "358", &["0"]),
    (*b"FJ", "679", &["0"]),
    (*b"FK", "500", &["0"]),
    (*b"FM", "691", &["0"]),
    (*b"FO", "298", &["0"]),
    (*b"FR", "33", &["0"]),
    (*b"GA", "241", &[]),
    (*b"GB", "44", &["0"]),
    (*b"GD", "1", &["1"]),
    (*b"GE", "995", &["0"]),
    (*b"GF", "594", &["0"]),
    (*b"GG", "44", &["0"]),
    (*b"GH", "233", &["0"]),
    (*b"GI", "350", &["0"]),
    (*b"GL", "299", &["0"]),
    (*b"GM", "220", &["0"]),
    (*b"GN", "224", &["0"]),
    (*b"GP", "590", &["0"]),
    (*b"GQ", "240", &["0"]),
    (*b"GR", "30", &["0"]),
    (*b"GS", "500", &["0"]),
    (*b"GT", "502", &["0"]),
    (*b"GU", "1", &["1"]),
    (*b"GW", "245", &["0"]),
    (*b"GY", "592", &["0"]),
    (*b"HK", "852", &["0"]),
    (*b"HM", "672", &["0"]),
    (*b"HN", "504", &["0"]),
    (*b"HR", "385", &["0"]),
    (*b"HT", "509", &["0"]),
    (*b"HU", "36", &["06"]),
    (*b"ID", "62", &["0"]),
    (*b"IE", "353", &["0"]),
    (*b"IL", "972", &["0"]),
    (*b"IM", "44", &["0"]),
    (*b"IN", "91", &["0"]),
    (*b"IO", "246", &["0"]),
    (*b"IQ", "964", &["0"]),
    (*b"IR", "98", &["0"]),
    (*b"IS", "354", &["0"]),
    (*b"IT", "39", &[]),
    (*b"JE", "44", &["0"]),
    (*b"JM", "1", &["1"]),
    (*b"JO", "962", &["0"]),
    (*b"JP", "81", &["0"]),
    (*b"KE", "254", &["0"]),
    (*b"KG", "996", &["0"]),
    (*b"KH", "855", &["0"]),
    (*b"KI", "686", &["0"]),
    (*b"KM", "269", &["0"]),
    (*b"KN", "1", &["1"]),
    (*b"KP", "850", &["0"]),
    (*b"KR", "82", &["0"]),
    (*b"KW", "965", &["0"]),
    (*b"KY", "1", &["1"]),
    (*b"KZ", "7", &["8"]),
    (*b"LA", "856", &["0"]),
    (*b"LB", "961", &["0"]),
    (*b"LC", "1", &["1"]),
    (*b"LI", "423", &["0"]),
    (*b"LK", "94", &["0"]),
    (*b"LR", "231", &["0"]),
    (*b"LS", "266", &["0"]),
    (*b"LT", "370", &["8", "0"]),
    (*b"LU", "352", &["0"]),
    (*b"LV", "371", &["0"]),
    (*b"LY", "218", &["0"]),
    (*b"MA", "212", &["0"]),
    (*b"MC", "377", &["0"]),
    (*b"MD", "373", &["0"]),
    (*b"ME", "382", &["0"]),
    (*b"MF", "590", &["0"]),
    (*b"MG", "261", &["0"]),
    (*b"MH", "692", &["0"]),
    (*b"MK", "389", &["0"]),
    (*b"ML", "223", &["0"]),
    (*b"MM", "95", &["0"]),
    (*b"MN", "976", &["0"]),
    (*b"MO", "853", &["0"]),
    (*b"MP", "1", &["1"]),
    (*b"MQ", "596", &["0"]),
    (*b"MR", "222", &["0"]),
    (*b"MS", "1", &["1"]),
    (*b"MT", "356", &["0"]),
    (*b"MU", "230", &["0"]),
    (*b"MV", "960", &["0"]),
    (*b"MW", "265", &["0"]),
    (*b"MX", "52", &[]),
    (*b"MY", "60", &["0"]),
    (*b"MZ", "258", &["0"]),
    (*b"NA", "264", &["0"]),
    (*b"NC", "687", &["0"]),
    (*b"NE", "227", &["0"]),
    (*b"NF", "672", &["0"]),
    (*b"NG", "234", &["0"]),
    (*b"NI", "505", &["0"]),
    (*b"NL", "31", &["0"]),
    (*b"NO", "47", &["0"]),
    (*b"NP", "977", &["0"]),
    (*b"NR", "674", &["0"]),
    (*b"NU", "683", &["0"]),
    (*b"NZ", "64", &["0"]),
    (*b"OM", "968", &["0"]),
    (*b"PA", "507", &["0"]),
    (*b"PE", "51", &["0"]),
    (*b"PF", "689", &["0"]),
    (*b"PG", "675", &["0"]),
    (*b"PH", "63", &["0"]),
    (*b"PK", "92", &["0"]),
    (*b"PL", "48", &["0"]),
    (*b"PM", "508", &["0"]),
    (*b"PN", "64", &["0"]),
    (*b"PR", "1", &["1"]),
    (*b"PS", "970", &["0"]),
    (*b"PT", "351", &["0"]),
    (*b"PW", "680", &["0"]),
    (*b"PY", "595", &["0"]),
    (*b"QA", "974", &["0"]),
    (*b"RE", "262", &["0"]),
    (*b"RO", "40", &["0"]),
    (*b"RS", "381", &["0"]),
    (*b"RU", "7", &["8"]),
    (*b"RW", "250", &["0"]),
    (*b"SA", "966", &["0"]),
    (*b"SB", "677", &["0"]),
    (*b"SC", "248", &["0"]),
    (*b"SD", "249", &["0"]),
    (*b"SE", "46", &["0"]),
    (*b"SG", "65", &["0"]),
    (*b"SH", "290", &["0"]),
    (*b"SI", "386", &["0"]),
    (*b"SJ", "47", &["0"]),
    (*b"SK", "421", &["0"]),
    (*b"SL", "232", &["0"]),
    (*b"SM", "378", &[]),
    (*b"SN", "221", &["0"]),
    (*b"SO", "252", &["0"]),
    (*b"SR", "597", &["0"]),
    (*b"SS", "211", &["0"]),
    (*b"ST", "239", &["0"]),
    (*b"SV", "503", &["0"]),
    (*b"SX", "1", &["1"]),
    (*b"SY", "963", &["0"]),
    (*b"SZ", "268", &["0"]),
    (*b"TC", "1", &["1"]),
    (*b"TD", "235", &["0"]),
    (*b"TF", "262", &["0"]),
    (*b"TG", "228", &["0"]),
    (*b"TH", "66", &["0"]),
    (*b"TJ", "992", &["8"]),
    (*b"TK", "690", &["0"]),
    (*b"TL", "670", &["0"]),
    (*b"TM", "993", &["8"]),
    (*b"TN", "216", &["0"]),
    (*b"TO", "676", &["0"]),
    (*b"TR", "90", &["0"]),
    (*b"TT", "1", &["1"]),
    (*b"TV", "688", &["0"]),
    (*b"TW", "886", &["0"]),
    (*b"TZ", "255", &["0"]),
    (*b"UA", "380", &["0"]),
    (*b"UG", "256", &["0"]),
    (*b"UM", "1", &["1"]),
    (*b"US", "1", &["1"]),
    (*b"UY", "598", &["0"]),
    (*b"UZ", "998", &["8"]),
    (*b"VA", "39", &[]),
    (*b"VC", "1", &["1"]),
    (*b"VE", "58", &["0"]),
    (*b"VG", "1", &["1"]),
    (*b"VI", "1", &["1"]),
    (*b"VN", "84", &["0"]),
    (*b"VU", "678", &["0"]),
    (*b"WF", "681", &["0"]),
    (*b"WS", "685", &["0"]),
    (*b"XK", "383", &["0"]),
    (*b"YE", "967", &["0"]),
    (*b"YT", "262", &["0"]),
    (*b"ZA", "27", &["0"]),
    (*b"ZM", "260", &["0"]),
    (*b"ZW", "263", &["0"]),
];

/// `COUNTRIES`' position + 1 of every code `AA`..`ZZ` (0: not a country), for a lookup
/// without a search.
const INDEX: [u8; 26 * 26] = {
    let mut index = [0u8; 26 * 26];
    let mut i = 0;
    while i < COUNTRIES.len() {
        let [a, b] = COUNTRIES[i].0;
        index[(a - b'A') as usize * 26 + (b - b'A') as usize] = (i + 1) as u8;
        i += 1;
    }
    index
};

/// The position in `COUNTRIES` of an alpha-2 code in any case.
pub(super) fn position(code: &[u8]) -> Option<usize> {
    let &[a, b] = code else {
        return None;
    };
    let (a, b) = (a.to_ascii_uppercase(), b.to_ascii_uppercase());
    if !a.is_ascii_uppercase() || !b.is_ascii_uppercase() {
        return None;
    }
    let slot = INDEX.get(usize::from(a - b'A') * 26 + usize::from(b - b'A'))?;
    usize::from(*slot).checked_sub(1)
}

/// A country's calling code and trunk prefixes, by its alpha-2 code in any case.
pub(super) fn lookup(code: &str) -> Option<(&'static str, &'static [&'static str])> {
    COUNTRIES.get(position(code.as_bytes())?).map(|&(_, calling, trunks)| (calling, trunks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_complete() {
        assert!(COUNTRIES.windows(2).all(|w| w[0].0 < w[1].0), "sorted, each code once");
        assert!(COUNTRIES.iter().enumerate().all(|(i, (code, _, _))| position(code) == Some(i)));
        // 249 ISO 3166-1 codes and XK.
        assert_eq!(COUNTRIES.len(), 250);
        assert!(
            COUNTRIES
                .iter()
                .all(|(_, cc, _)| !cc.is_empty() && cc.bytes().all(|b| b.is_ascii_digit()) && !cc.starts_with('0'))
        );
        assert_eq!(lookup("us"), Some(("1", &["1"][..])));
        assert_eq!(lookup("Gb"), Some(("44", &["0"][..])));
        assert_eq!(lookup("IT"), Some(("39", &[][..])));
        assert_eq!(lookup("zz"), None);
        assert_eq!(lookup("u"), None);
    }
}
