//! Pure parsing for the hardware sources: beacon frames, address hashing, WiFi fields.

use sha2::{Digest, Sha256};

/// Apple's company id (iBeacon frames live in its manufacturer data).
pub const APPLE: u16 = 0x004c;

/// `uuid:major:minor` and tx power of an iBeacon frame (manufacturer data of `APPLE`).
pub fn ibeacon(data: &[u8]) -> Option<(String, i8)> {
    if data.len() < 23 || data[0] != 0x02 || data[1] != 0x15 {
        return None;
    }
    let u = &data[2..18];
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        hex::encode(&u[0..4]),
        hex::encode(&u[4..6]),
        hex::encode(&u[6..8]),
        hex::encode(&u[8..10]),
        hex::encode(&u[10..16])
    );
    let major = u16::from_be_bytes([data[18], data[19]]);
    let minor = u16::from_be_bytes([data[20], data[21]]);
    Some((format!("{uuid}:{major}:{minor}"), data[22] as i8))
}

/// `namespace:instance` and tx power (at 0 m) of an Eddystone-UID frame (service data of
/// UUID 0xFEAA).
pub fn eddystone_uid(data: &[u8]) -> Option<(String, i8)> {
    if data.len() < 18 || data[0] != 0x00 {
        return None;
    }
    Some((
        format!(
            "{}:{}",
            hex::encode(&data[2..12]),
            hex::encode(&data[12..18])
        ),
        data[1] as i8,
    ))
}

/// A salted hash standing in for an address that is not enrolled (`h-` + 16 hex digits).
pub fn hashed_id(salt: &str, address: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0u8]);
    h.update(address.to_ascii_lowercase().as_bytes());
    format!("h-{}", hex::encode(&h.finalize()[..8]))
}

/// WiFi channel of a frequency in MHz (2.4, 5 and 6 GHz bands).
pub fn channel(freq_mhz: u32) -> Option<u16> {
    let c = match freq_mhz {
        2484 => 14,
        2412..=2472 => (freq_mhz - 2407) / 5,
        5955..=7115 => (freq_mhz - 5950) / 5,
        5000..=5900 => (freq_mhz - 5000) / 5,
        _ => return None,
    };
    Some(c as u16)
}

/// The SSID element (id 0) of 802.11 information elements, if it is valid UTF-8.
pub fn ssid(ies: &[u8]) -> Option<String> {
    let mut i = 0;
    while i + 2 <= ies.len() {
        let (id, len) = (ies[i], ies[i + 1] as usize);
        let body = ies.get(i + 2..i + 2 + len)?;
        if id == 0 {
            return std::str::from_utf8(body)
                .ok()
                .filter(|s| !s.is_empty() && s.len() <= 32)
                .map(str::to_string);
        }
        i += 2 + len;
    }
    None
}

/// `aa:bb:cc:dd:ee:ff` from 6 bytes.
pub fn mac(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ibeacon() {
        let mut d = vec![0x02, 0x15];
        d.extend(hex::decode("f7826da64fa24e988024bc5b71e0893e").unwrap());
        d.extend([0x00, 0x01, 0x00, 0x02, 0xc5]);
        let (id, tx) = ibeacon(&d).unwrap();
        assert_eq!(id, "f7826da6-4fa2-4e98-8024-bc5b71e0893e:1:2");
        assert_eq!(tx, -59);
        assert!(ibeacon(&d[..10]).is_none());
    }

    #[test]
    fn parses_eddystone_uid() {
        let mut d = vec![0x00, 0xee];
        d.extend(0..16u8);
        let (id, tx) = eddystone_uid(&d).unwrap();
        assert_eq!(id, "00010203040506070809:0a0b0c0d0e0f");
        assert_eq!(tx, -18);
        assert!(eddystone_uid(&[0x10, 0, 0]).is_none());
    }

    #[test]
    fn hashes_are_salted_and_stable() {
        let a = hashed_id("s1", "AA:BB:CC:DD:EE:FF");
        assert_eq!(a, hashed_id("s1", "aa:bb:cc:dd:ee:ff"));
        assert_ne!(a, hashed_id("s2", "aa:bb:cc:dd:ee:ff"));
        assert!(roomsense_common::DeviceId::parse(&a).is_ok());
        assert!(!a.contains("aa"));
    }

    #[test]
    fn wifi_fields() {
        assert_eq!(channel(2412), Some(1));
        assert_eq!(channel(2484), Some(14));
        assert_eq!(channel(5180), Some(36));
        assert_eq!(channel(5955), Some(1));
        assert_eq!(
            ssid(&[0, 4, b'c', b'o', b'r', b'p', 1, 1, 0]),
            Some("corp".into())
        );
        assert_eq!(ssid(&[0, 0]), None);
        assert_eq!(mac(&[0, 1, 2, 0xaa, 0xbb, 0xcc]), "00:01:02:aa:bb:cc");
    }
}
