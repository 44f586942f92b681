//! Values people type on the command line, parsed leniently where the intent is clear and refused
//! with a sentence (not parser jargon) where it is not.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// A version number: `3`, or `v3` / `V3` as OFREP labels variants. Arguments using it also set
/// `allow_negative_numbers`, so that `-1` reaches this parser instead of clap's `-- -1` tip.
pub fn version_number(text: &str) -> Result<i64, String> {
    let trimmed = text.trim();
    let digits = trimmed.strip_prefix(['v', 'V']).unwrap_or(trimmed);
    match digits.parse::<i64>() {
        Ok(number) if number >= 1 => Ok(number),
        Ok(_) => Err(format!("version numbers start at 1 (got {trimmed})")),
        Err(_) => Err(format!("{trimmed:?} is not a version number: give one such as 3 or v3")),
    }
}

/// Where `serve` listens: `ADDRESS:PORT`, `localhost:PORT`, or a bare port (`7505`, `:7505`) on
/// the loopback address.
pub fn listen_address(text: &str) -> Result<SocketAddr, String> {
    let trimmed = text.trim();
    if let Ok(address) = trimmed.parse::<SocketAddr>() {
        return Ok(address);
    }
    let port = trimmed.strip_prefix("localhost:").or_else(|| trimmed.strip_prefix(':')).unwrap_or(trimmed);
    match port.parse::<u16>() {
        Ok(port) => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
        Err(_) => Err(format!(
            "{trimmed:?} is not an address to listen on: give ADDRESS:PORT (127.0.0.1:7300, 0.0.0.0:7300, \
             [::1]:7300) or a port alone (7300, meaning 127.0.0.1:7300)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::{listen_address, version_number};

    #[test]
    fn versions_are_numbers_with_or_without_a_v() {
        assert_eq!(version_number("2"), Ok(2));
        assert_eq!(version_number("v2"), Ok(2));
        assert_eq!(version_number("V12"), Ok(12));
    }

    #[test]
    fn versions_below_one_and_words_are_refused_with_a_sentence() {
        assert_eq!(version_number("-1"), Err("version numbers start at 1 (got -1)".to_owned()));
        assert_eq!(version_number("0"), Err("version numbers start at 1 (got 0)".to_owned()));
        assert_eq!(
            version_number("latest"),
            Err("\"latest\" is not a version number: give one such as 3 or v3".to_owned())
        );
        assert!(version_number("v").is_err());
    }

    #[test]
    fn a_bare_port_listens_on_the_loopback_address() {
        assert_eq!(listen_address("7505"), Ok("127.0.0.1:7505".parse().unwrap()));
        assert_eq!(listen_address(":7505"), Ok("127.0.0.1:7505".parse().unwrap()));
        assert_eq!(listen_address("localhost:7505"), Ok("127.0.0.1:7505".parse().unwrap()));
        assert_eq!(listen_address("0.0.0.0:7300"), Ok("0.0.0.0:7300".parse().unwrap()));
        assert_eq!(listen_address("[::1]:7300"), Ok("[::1]:7300".parse().unwrap()));
    }

    #[test]
    fn an_address_that_is_neither_is_explained() {
        let err = listen_address("127.0.0.1").unwrap_err();
        assert!(err.contains("give ADDRESS:PORT"), "{err}");
        assert!(listen_address("70000").is_err());
    }
}
