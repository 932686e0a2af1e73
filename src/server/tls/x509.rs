//! The facts Hydrant reads from a certificate itself: when it expires, for the
//! `hydrant_tls_certificate_not_after_seconds` gauge (an alert can then fire days
//! before it happens), and when it became valid, for the renewal point of an ACME
//! certificate. rustls does not expose them, and a whole X.509 parser is a lot of
//! code to read two fields, so this walks the DER to them (RFC 5280 §4.1):
//!
//! ```text
//! Certificate  ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
//! TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature,
//!                               issuer, validity, … }
//! Validity     ::= SEQUENCE { notBefore Time, notAfter Time }
//! Time         ::= CHOICE { utcTime (tag 0x17), generalTime (tag 0x18) }
//! ```
//!
//! The input is a certificate the operator configured or the CA issued, checked
//! by rustls's use of it; a malformed one gives `None`, never a panic.

/// DER tag of a SEQUENCE.
const SEQUENCE: u8 = 0x30;
/// DER tag of the explicit `[0]` version field.
const VERSION: u8 = 0xa0;
/// DER tag of a UTCTime (`YYMMDDHHMMSSZ`).
const UTC_TIME: u8 = 0x17;
/// DER tag of a GeneralizedTime (`YYYYMMDDHHMMSSZ`).
const GENERALIZED_TIME: u8 = 0x18;

/// When the DER certificate `der` stops being valid, in seconds since the epoch.
#[must_use]
pub fn not_after(der: &[u8]) -> Option<i64> {
    validity(der).map(|(_, not_after)| not_after)
}

/// The validity period of the DER certificate `der`: not before, not after, in
/// seconds since the epoch.
#[must_use]
pub fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (tag, certificate, _) = element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = element(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    if rest.first() == Some(&VERSION) {
        rest = element(rest)?.2;
    }
    // serialNumber, signature, issuer
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (tag, validity, _) = element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let (not_before, after_rest) = time(validity)?;
    let (not_after, _) = time(after_rest)?;
    Some((not_before, not_after))
}

/// Reads one Time element off `input`: its seconds and what follows.
fn time(input: &[u8]) -> Option<(i64, &[u8])> {
    let (tag, time, rest) = element(input)?;
    let text = std::str::from_utf8(time).ok()?;
    let seconds = match tag {
        UTC_TIME => utc_time(text),
        GENERALIZED_TIME => generalized_time(text),
        _ => None,
    }?;
    Some((seconds, rest))
}

/// Splits one DER element off `input`: its tag, its contents and what follows.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        // Long form: the low bits say how many length bytes follow (at most 4 here:
        // no certificate is 4 GiB).
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes
            .iter()
            .fold(0_usize, |len, &byte| (len << 8) | usize::from(byte))
    };
    if rest.len() < len {
        return None;
    }
    let (contents, after) = rest.split_at(len);
    Some((tag, contents, after))
}

/// `YYMMDDHHMMSSZ`; years 50–99 are 19xx, 00–49 are 20xx (RFC 5280 §4.1.2.5.1).
fn utc_time(text: &str) -> Option<i64> {
    let digits = text.strip_suffix('Z')?;
    if digits.len() != 12 {
        return None;
    }
    let yy = number(&digits[0..2])?;
    let year = if yy >= 50 { 1900 + yy } else { 2000 + yy };
    seconds(year, &digits[2..])
}

/// `YYYYMMDDHHMMSSZ` (RFC 5280 §4.1.2.5.2: always UTC, no fractions).
fn generalized_time(text: &str) -> Option<i64> {
    let digits = text.strip_suffix('Z')?;
    if digits.len() != 14 {
        return None;
    }
    seconds(number(&digits[0..4])?, &digits[4..])
}

/// Seconds since the epoch of `year` and `MMDDHHMMSS`.
fn seconds(year: i64, rest: &str) -> Option<i64> {
    let month = number(&rest[0..2])?;
    let day = number(&rest[2..4])?;
    let hour = number(&rest[4..6])?;
    let minute = number(&rest[6..8])?;
    let second = number(&rest[8..10])?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

fn number(digits: &str) -> Option<i64> {
    if digits.bytes().all(|byte| byte.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian calendar
/// (Howard Hinnant's `days_from_civil` algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_seconds_since_the_epoch() {
        let cases = [
            (UTC_TIME, "700101000000Z", Some(0)),
            (UTC_TIME, "491231235959Z", Some(2_524_607_999)),
            (UTC_TIME, "500101000000Z", Some(-631_152_000)),
            (UTC_TIME, "240229120000Z", Some(1_709_208_000)),
            (GENERALIZED_TIME, "20500101000000Z", Some(2_524_608_000)),
            (GENERALIZED_TIME, "21251103094512Z", Some(4_917_836_712)),
            (UTC_TIME, "2401011200Z", None),
            (UTC_TIME, "241301000000Z", None),
            (UTC_TIME, "24010100000aZ", None),
            (UTC_TIME, "240101000000+0100", None),
            (GENERALIZED_TIME, "20240101000000.5Z", None),
        ];
        for (tag, text, expected) in cases {
            let got = match tag {
                UTC_TIME => utc_time(text),
                _ => generalized_time(text),
            };
            assert_eq!(got, expected, "{text}");
        }
    }

    #[test]
    fn a_real_certificate_gives_its_not_after() {
        // tests/fixtures/tls/client.pem: `openssl x509 -enddate -noout` says
        // notAfter=Nov  5 10:24:53 2126 GMT (a GeneralizedTime, being past 2049).
        let pem = include_str!("../../../tests/fixtures/tls/client.pem");
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(not_after(der.as_ref()), Some(4_949_547_893));
        // notBefore=Nov 29 10:24:53 2026 GMT.
        assert_eq!(
            validity(der.as_ref()).map(|(not_before, _)| not_before),
            Some(1_795_947_893)
        );
    }

    #[test]
    fn malformed_input_gives_none() {
        let pem = include_str!("../../../tests/fixtures/tls/client.pem");
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let der = der.as_ref();
        for cut in [0, 1, 2, 10, der.len() / 2] {
            assert_eq!(not_after(&der[..cut]), None, "cut at {cut}");
            assert_eq!(validity(&der[..cut]), None, "cut at {cut}");
        }
        assert_eq!(not_after(&[0x04, 0x00]), None);
        assert_eq!(not_after(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
    }
}
