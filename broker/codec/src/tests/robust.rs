//! Deterministic robustness: random mutations of valid encodings never make the decoder panic, and
//! whatever it accepts re-encodes and decodes to the same packet.

use super::*;

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn byte(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }
}

fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    for _ in 0..=rng.below(3) {
        let len = data.len();
        match rng.below(8) {
            0 | 1 => {
                if len > 0 {
                    let i = rng.below(len);
                    data[i] ^= 1 << rng.below(8);
                }
            }
            2 => {
                if len > 0 {
                    let i = rng.below(len);
                    data[i] = rng.byte();
                }
            }
            3 => data.truncate(rng.below(len + 1)),
            4 => {
                let i = rng.below(len + 1);
                data.insert(i, rng.byte());
            }
            5 => {
                if len > 0 {
                    data.remove(rng.below(len));
                }
            }
            // The remaining-length byte and the first length-like bytes of the body.
            6 => {
                if len > 1 {
                    let i = 1 + rng.below(len.min(8) - 1);
                    data[i] = [0x00, 0x01, 0x7F, 0x80, 0xFF, rng.byte()][rng.below(6)];
                }
            }
            _ => {
                if len > 0 {
                    let i = rng.below(len);
                    let j = i + rng.below(len - i);
                    let copy = data[i..j].to_vec();
                    let at = rng.below(len + 1);
                    data.splice(at..at, copy);
                }
            }
        }
    }
}

const STATES: [Option<Protocol>; 4] = [None, Some(Protocol::V3_1), Some(Protocol::V3_1_1), Some(Protocol::V5)];

#[test]
fn random_mutations_never_panic_and_accepted_packets_reencode() {
    let mut corpus = Vec::new();
    for protocol in LEVELS {
        for p in samples(protocol) {
            corpus.push((encode_vec(&p, protocol).to_vec(), state_for(&p, protocol)));
        }
    }
    let mut rng = Rng(0x5EED_F1EE_7000_0001);
    let mut accepted = 0usize;
    for _ in 0..200_000 {
        let (orig, state) = &corpus[rng.below(corpus.len())];
        let mut data = orig.clone();
        mutate(&mut rng, &mut data);
        let state = if rng.below(4) == 0 { STATES[rng.below(4)] } else { *state };
        let max = if rng.below(8) == 0 { rng.below(64) } else { BIG };
        let mut buf = BytesMut::from(&data[..]);
        let Ok(Some(packet)) = decode(&mut buf, state, max) else {
            continue;
        };
        accepted += 1;
        let protocol = match (&packet, state) {
            (Packet::Connect(c), _) => c.protocol,
            (_, Some(p)) => p,
            (_, None) => panic!("non-CONNECT accepted before CONNECT"),
        };
        let mut out = BytesMut::new();
        encode(&packet, protocol, &mut out).expect("accepted packet re-encodes");
        assert_eq!(out.len(), encoded_len(&packet, protocol));
        let again = decode(&mut out, state, BIG);
        assert_eq!(again, Ok(Some(packet)));
    }
    // The mutations must leave enough valid packets to exercise the re-encoding path.
    assert!(accepted > 10_000, "only {accepted} mutated packets decoded");
}
