//! Content codings of bulk OFREP answers: gzip, br and zstd, chosen by `Accept-Encoding`
//! (RFC 9110 §12.5.3), compressed once per revision and environment, never per request.
//!
//! A bulk answer of an environment where only pins decide is a shared prefix (every flag's answer
//! and the start of `eventStreams`, up to the stream ticket) followed by a tail of about 200
//! bytes (the ticket, bound to the caller's token, and the closing brackets). The prefix is
//! compressed once, by the first request that asks for a coding; a request compresses only its
//! tail and joins the two as each format allows, so that the answer is one standard stream that
//! any decoder reads:
//!
//! - **gzip**: one member. The prefix's deflate data ends with a sync flush (byte-aligned,
//!   non-final blocks); the tail is a raw deflate stream of its own, ending with the final block,
//!   so no back-reference crosses the joint. The trailer's CRC-32 is the prefix's combined with
//!   the tail's (`crc32fast::Hasher::combine`), ISIZE the sum of both lengths.
//! - **zstd**: two frames, one after the other (RFC 8878 §3.1: a decoder reads every frame).
//! - **br**: the prefix compressed `appendable`, the tail `catable`, joined by the `brotli`
//!   crate's `BroCatli`, whose state after the prefix is kept (its last two bytes are rewritten at
//!   the joint, so they travel with each request's tail rather than with the shared bytes).

use std::cell::RefCell;
use std::io::Write;

use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use brotli::concat::{BroCatli, BroCatliResult};

/// A content coding of a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Br,
    Zstd,
}

/// gzip level: the usual default; the prefix is compressed once per revision.
const GZIP_LEVEL: u32 = 6;
/// zstd level: a better ratio than gzip at a few milliseconds for a 200 KB answer.
const ZSTD_LEVEL: i32 = 9;
/// brotli quality and window for the prefix: near the best ratio in tens of milliseconds once.
const BR_QUALITY: i32 = 9;
const BR_WINDOW: i32 = 22;
/// The tail is a couple of hundred bytes: compressed fast, in a small window.
const BR_TAIL_QUALITY: i32 = 2;
const BR_TAIL_WINDOW: i32 = 16;

impl Coding {
    /// The compressed codings, in the server's order of preference among equal q-values:
    /// the smallest first.
    pub const COMPRESSED: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];

    pub fn name(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::Br => "br",
            Coding::Zstd => "zstd",
        }
    }

    /// Position in [`Coding::COMPRESSED`]; `None` for identity.
    pub fn slot(self) -> Option<usize> {
        Coding::COMPRESSED.iter().position(|c| *c == self)
    }
}

/// A qvalue in thousandths (`q=0.5` is 500); `None` when malformed (RFC 9110 §12.4.2).
fn qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths =
        fraction.bytes().chain(std::iter::repeat(b'0')).take(3).fold(0u16, |n, b| n * 10 + u16::from(b - b'0'));
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The coding to answer with, by `Accept-Encoding` (RFC 9110 §12.5.3): the acceptable coding of
/// the highest qvalue, the compressed ones before identity and in [`Coding::COMPRESSED`] order on
/// a tie. No header: identity (a client that does not ask may not decode). `*` stands for every
/// coding not named; identity is acceptable unless `identity;q=0`, or `*;q=0` without an entry
/// for identity. An entry with a malformed qvalue is ignored; a coding named twice keeps its
/// highest qvalue. When nothing is acceptable the answer is identity anyway: the server
/// disregards the header rather than answer 406 (RFC 9110 §12.1 allows either).
pub fn negotiate(headers: &HeaderMap) -> Coding {
    // gzip, br, zstd, identity, *
    let mut weights: [Option<u16>; 5] = [None; 5];
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for entry in value.split(',') {
            let mut parts = entry.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let mut weight = Some(1000);
            for parameter in parts {
                match parameter.split_once('=') {
                    Some((key, q)) if key.trim().eq_ignore_ascii_case("q") => weight = qvalue(q.trim()),
                    _ => {}
                }
            }
            let Some(weight) = weight else { continue };
            let slot = match name.to_ascii_lowercase().as_str() {
                "gzip" | "x-gzip" => 0,
                "br" => 1,
                "zstd" => 2,
                "identity" => 3,
                "*" => 4,
                _ => continue,
            };
            weights[slot] = Some(weights[slot].map_or(weight, |w| w.max(weight)));
        }
    }
    let star = weights[4];
    let weight = |coding: Coding| match coding {
        Coding::Gzip => weights[0].or(star).unwrap_or(0),
        Coding::Br => weights[1].or(star).unwrap_or(0),
        Coding::Zstd => weights[2].or(star).unwrap_or(0),
        Coding::Identity => weights[3].or(star).unwrap_or(1),
    };
    let mut best = (Coding::Identity, weight(Coding::Identity));
    for coding in Coding::COMPRESSED {
        let w = weight(coding);
        if w > 0 && (w > best.1 || (w == best.1 && best.0 == Coding::Identity)) {
            best = (coding, w);
        }
    }
    best.0
}

/// How a compressed prefix is joined to a request's tail.
enum Joint {
    /// Nothing to join: the tail as it is.
    Identity,
    /// The prefix's CRC-32 and length, to write the member's trailer.
    Gzip {
        crc: u32,
        length: u64,
    },
    Zstd,
    /// `BroCatli`'s state after the prefix (its last bytes are rewritten at the joint).
    Br {
        state: [u8; 24],
    },
}

/// A bulk answer's shared prefix, compressed once in one coding.
pub struct CompressedPrefix {
    /// The first bytes of the encoded answer, the same for every caller.
    pub head: Bytes,
    joint: Joint,
}

impl CompressedPrefix {
    /// Compresses `prefix` (tens of milliseconds for a 200 KB answer in br: run it off the async
    /// workers).
    pub fn new(coding: Coding, prefix: &[u8]) -> std::io::Result<Self> {
        match coding {
            Coding::Identity => Ok(Self { head: Bytes::copy_from_slice(prefix), joint: Joint::Identity }),
            Coding::Gzip => {
                let compression = flate2::Compression::new(GZIP_LEVEL);
                let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(prefix.len() / 4), compression);
                encoder.write_all(prefix)?;
                // A sync flush: the member's header and the prefix's blocks, none final, ending on
                // a byte boundary. The encoder is then dropped unfinished (its final block goes to
                // the emptied buffer it is left with).
                encoder.flush()?;
                let head = std::mem::take(encoder.get_mut());
                let crc = crc32fast::hash(prefix);
                Ok(Self { head: head.into(), joint: Joint::Gzip { crc, length: prefix.len() as u64 } })
            }
            Coding::Zstd => {
                let head = zstd::bulk::compress(prefix, ZSTD_LEVEL)?;
                Ok(Self { head: head.into(), joint: Joint::Zstd })
            }
            Coding::Br => {
                let params = brotli::enc::BrotliEncoderParams {
                    quality: BR_QUALITY,
                    lgwin: BR_WINDOW,
                    appendable: true,
                    size_hint: prefix.len(),
                    ..Default::default()
                };
                let mut compressed = Vec::with_capacity(prefix.len() / 4);
                brotli::BrotliCompress(&mut &prefix[..], &mut compressed, &params)?;
                let mut catli = BroCatli::new();
                catli.new_brotli_file();
                let mut head = vec![0; compressed.len() + 16];
                let (mut read, mut written) = (0, 0);
                while read < compressed.len() {
                    match catli.stream(&compressed, &mut read, &mut head, &mut written) {
                        BroCatliResult::NeedsMoreInput | BroCatliResult::Success => {}
                        BroCatliResult::NeedsMoreOutput => head.resize(head.len() * 2, 0),
                        failure => return Err(brotli_error(failure)),
                    }
                }
                head.truncate(written);
                let mut state = [0; 24];
                catli.serialize_to_buffer(&mut state).map_err(|()| brotli_error(BroCatliResult::InvalidWindowSize))?;
                Ok(Self { head: head.into(), joint: Joint::Br { state } })
            }
        }
    }

    /// The bytes that follow [`CompressedPrefix::head`] for a request whose tail is `tail`:
    /// together, one complete stream of the coding.
    pub fn finish(&self, tail: &[u8]) -> std::io::Result<Bytes> {
        match &self.joint {
            Joint::Identity => Ok(Bytes::copy_from_slice(tail)),
            Joint::Gzip { crc, length } => {
                let mut out = deflate_final(tail)?;
                let mut hasher = crc32fast::Hasher::new_with_initial_len(*crc, *length);
                let mut tail_crc = crc32fast::Hasher::new();
                tail_crc.update(tail);
                hasher.combine(&tail_crc);
                out.extend_from_slice(&hasher.finalize().to_le_bytes());
                // ISIZE: the uncompressed length modulo 2^32 (RFC 1952).
                out.extend_from_slice(&((length + tail.len() as u64) as u32).to_le_bytes());
                Ok(out.into())
            }
            Joint::Zstd => ZSTD_TAIL.with(|compressor| {
                let mut compressor = compressor.borrow_mut();
                if compressor.is_none() {
                    *compressor = Some(zstd::bulk::Compressor::new(1)?);
                }
                compressor.as_mut().map_or_else(|| Ok(Vec::new()), |c| c.compress(tail)).map(Bytes::from)
            }),
            Joint::Br { state } => {
                let params = brotli::enc::BrotliEncoderParams {
                    quality: BR_TAIL_QUALITY,
                    lgwin: BR_TAIL_WINDOW,
                    catable: true,
                    appendable: true,
                    use_dictionary: false,
                    size_hint: tail.len(),
                    ..Default::default()
                };
                let mut compressed = Vec::with_capacity(tail.len() + 16);
                brotli::BrotliCompress(&mut &tail[..], &mut compressed, &params)?;
                let mut catli = BroCatli::deserialize_from_buffer(state)
                    .map_err(|()| brotli_error(BroCatliResult::InvalidWindowSize))?;
                catli.new_brotli_file();
                let mut out = vec![0; compressed.len() + 16];
                let (mut read, mut written) = (0, 0);
                while read < compressed.len() {
                    match catli.stream(&compressed, &mut read, &mut out, &mut written) {
                        BroCatliResult::NeedsMoreInput | BroCatliResult::Success => {}
                        BroCatliResult::NeedsMoreOutput => out.resize(out.len() * 2, 0),
                        failure => return Err(brotli_error(failure)),
                    }
                }
                loop {
                    match catli.finish(&mut out, &mut written) {
                        BroCatliResult::Success => break,
                        BroCatliResult::NeedsMoreOutput => out.resize(out.len() * 2, 0),
                        failure => return Err(brotli_error(failure)),
                    }
                }
                out.truncate(written);
                Ok(out.into())
            }
        }
    }
}

fn brotli_error(result: BroCatliResult) -> std::io::Error {
    std::io::Error::other(format!("joining brotli streams: {result:?}"))
}

thread_local! {
    /// Compressors of tails, one per thread, reused: a deflate compressor holds a few hundred KB
    /// of tables that would otherwise be allocated for every request.
    static DEFLATE_TAIL: RefCell<flate2::Compress> =
        RefCell::new(flate2::Compress::new(flate2::Compression::fast(), false));
    static ZSTD_TAIL: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// `input` as a raw deflate stream ending with its final block.
fn deflate_final(input: &[u8]) -> std::io::Result<Vec<u8>> {
    DEFLATE_TAIL.with(|compress| {
        let mut compress = compress.borrow_mut();
        compress.reset();
        // Stored blocks cost 5 bytes each per 64 KB: this is always enough, the loop is a guard.
        let mut out = Vec::with_capacity(input.len() + 64);
        loop {
            let read = usize::try_from(compress.total_in()).unwrap_or(usize::MAX).min(input.len());
            let status = compress
                .compress_vec(&input[read..], &mut out, flate2::FlushCompress::Finish)
                .map_err(std::io::Error::other)?;
            if status == flate2::Status::StreamEnd {
                return Ok(out);
            }
            out.reserve(out.capacity().max(64));
        }
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use axum::http::HeaderValue;

    use super::*;

    fn accept(values: &[&str]) -> Coding {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        }
        negotiate(&headers)
    }

    #[test]
    fn the_coding_follows_accept_encoding_as_rfc_9110_says() {
        use Coding::*;
        let cases: &[(&[&str], Coding)] = &[
            (&[], Identity),
            (&[""], Identity),
            (&["gzip"], Gzip),
            (&["x-gzip"], Gzip),
            (&["GZIP"], Gzip),
            (&["zstd"], Zstd),
            (&["br"], Br),
            // What browsers send: the smallest of equals.
            (&["gzip, deflate, br, zstd"], Br),
            (&["gzip, deflate", "zstd"], Zstd),
            // q-values decide before the server's preference.
            (&["br;q=0.5, gzip;q=0.8"], Gzip),
            (&["br;q=0.5, gzip ; Q=0.8, zstd;q=0.801"], Zstd),
            (&["gzip;q=1.000, br;q=0.999"], Gzip),
            (&["gzip;q=0"], Identity),
            (&["br;q=0, *"], Zstd),
            (&["*;q=0.1, gzip;q=0"], Br),
            (&["*"], Br),
            // identity preferred over what is offered.
            (&["identity;q=1, gzip;q=0.5"], Identity),
            (&["identity, gzip"], Gzip),
            // Unknown codings and malformed q-values are ignored.
            (&["deflate, compress, sdch"], Identity),
            (&["gzip;q=2"], Identity),
            (&["gzip;q=0.5.5, br;q=abc, zstd;q=1.5"], Identity),
            (&["gzip;q=0.1234"], Identity),
            (&["gzip;q=0.5;level=1"], Gzip),
            // Nothing acceptable, identity excluded: the header is disregarded.
            (&["identity;q=0"], Identity),
            (&["*;q=0"], Identity),
            (&["deflate, *;q=0"], Identity),
        ];
        for (values, expected) in cases {
            assert_eq!(accept(values), *expected, "{values:?}");
        }
    }

    fn decode(coding: Coding, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match coding {
            Coding::Identity => out.extend_from_slice(bytes),
            Coding::Gzip => {
                // MultiGzDecoder would hide a second member: there must be exactly one.
                let mut decoder = flate2::read::GzDecoder::new(bytes);
                decoder.read_to_end(&mut out).unwrap();
                let mut rest = Vec::new();
                decoder.into_inner().read_to_end(&mut rest).unwrap();
                assert!(rest.is_empty(), "bytes after the gzip member");
            }
            Coding::Zstd => out = zstd::stream::decode_all(bytes).unwrap(),
            Coding::Br => {
                brotli::BrotliDecompress(&mut &bytes[..], &mut out).unwrap();
            }
        }
        out
    }

    #[test]
    fn a_joined_answer_decodes_to_the_prefix_and_the_tail() {
        let prefix: Vec<u8> = (0..3_000)
            .flat_map(|i| {
                format!("{{\"key\":\"flag-{i}\",\"value\":{{\"n\":{i}}},\"reason\":\"STATIC\"}},").into_bytes()
            })
            .collect();
        let tails: [&[u8]; 3] = [b"t1.abc.def.production.1700000400.0123456789abcdef\"}]}", b"", b"x"];
        for coding in [Coding::Gzip, Coding::Br, Coding::Zstd, Coding::Identity] {
            for prefix in [&prefix[..], b"{\"flags\":[]", b""] {
                let compressed = CompressedPrefix::new(coding, prefix).unwrap();
                if coding != Coding::Identity && prefix.len() > 1_000 {
                    assert!(compressed.head.len() < prefix.len() / 5, "{coding:?}: {}", compressed.head.len());
                }
                for tail in tails {
                    let mut body = compressed.head.to_vec();
                    body.extend_from_slice(&compressed.finish(tail).unwrap());
                    let expected = [prefix, tail].concat();
                    assert!(decode(coding, &body) == expected, "{coding:?}, prefix {}, tail {tail:?}", prefix.len());
                }
            }
        }
    }

    #[test]
    fn the_gzip_trailer_holds_the_whole_bodys_crc_and_length() {
        let compressed = CompressedPrefix::new(Coding::Gzip, b"hello, ").unwrap();
        let mut body = compressed.head.to_vec();
        body.extend_from_slice(&compressed.finish(b"world").unwrap());
        let trailer = &body[body.len() - 8..];
        assert_eq!(trailer[..4], crc32fast::hash(b"hello, world").to_le_bytes());
        assert_eq!(trailer[4..], 12u32.to_le_bytes());
        assert_eq!(body[..3], [0x1f, 0x8b, 8]);
    }
}
