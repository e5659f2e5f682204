//! Block fitness (`src/lib_base/fitness.ml`): a list of byte strings whose
//! meaning belongs to the protocol.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A block's fitness: `u32` byte length, then each element as `u32 len ‖
/// bytes` (Octez's `list bytes`). In JSON, a list of hex strings.
///
/// Ordered as Octez orders fitnesses: a list with fewer elements is
/// smaller; lists of the same length compare element by element, a shorter
/// element being smaller and elements of the same length comparing as
/// unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Fitness(pub Vec<Vec<u8>>);

impl Fitness {
    /// Bytes of the encoding, its `u32` length included.
    pub fn encoded_len(&self) -> usize {
        4 + self.0.iter().map(|e| 4 + e.len()).sum::<usize>()
    }
}

/// Octez's `compare_bytes`: length first, then the bytes.
fn compare_elem(a: &[u8], b: &[u8]) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

impl Ord for Fitness {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.len().cmp(&other.0.len()).then_with(|| {
            self.0
                .iter()
                .zip(&other.0)
                .map(|(a, b)| compare_elem(a, b))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        })
    }
}

impl PartialOrd for Fitness {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Fitness {
    /// Octez's `Fitness.pp`: the elements in hex, joined by `::`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("::")?;
            }
            f.write_str(&hex::encode(e))?;
        }
        Ok(())
    }
}

impl From<Vec<Vec<u8>>> for Fitness {
    fn from(v: Vec<Vec<u8>>) -> Self {
        Fitness(v)
    }
}

impl Serialize for Fitness {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(hex::encode))
    }
}

impl<'de> Deserialize<'de> for Fitness {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.iter()
            .map(|s| hex::decode(s).map_err(serde::de::Error::custom))
            .collect::<Result<_, _>>()
            .map(Fitness)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(elems: &[&[u8]]) -> Fitness {
        Fitness(elems.iter().map(|e| e.to_vec()).collect())
    }

    #[test]
    fn order_is_octez_order() {
        // Fewer elements is smaller, whatever the bytes.
        assert!(f(&[&[0xFF; 8]]) < f(&[&[], &[]]));
        assert!(f(&[]) < f(&[&[]]));
        // Same number: shorter element is smaller, even if its bytes are
        // larger.
        assert!(f(&[&[0x02], &[0xFF]]) < f(&[&[0x02], &[0x00, 0x00]]));
        // Same lengths: unsigned lexicographic, first difference decides.
        assert!(f(&[&[0x01], &[0x7F]]) < f(&[&[0x01], &[0x80]]));
        assert!(f(&[&[0x01], &[0xFF]]) < f(&[&[0x02], &[0x00]]));
        assert_eq!(
            f(&[&[1], &[2, 3]]).cmp(&f(&[&[1], &[2, 3]])),
            Ordering::Equal
        );
        // A real pair: level 0x99828 beats 0x99827.
        let a = f(&[&[1], &hex::decode("0000000000099828").unwrap()]);
        let b = f(&[&[1], &hex::decode("0000000000099827").unwrap()]);
        assert!(a > b);
        let mut v = vec![a.clone(), f(&[]), b.clone()];
        v.sort();
        assert_eq!(v, [f(&[]), b, a]);
    }

    #[test]
    fn display_and_json_are_octez_ones() {
        let x = f(&[&[1], &hex::decode("0000000000099828").unwrap()]);
        assert_eq!(x.to_string(), "01::0000000000099828");
        assert_eq!(f(&[]).to_string(), "");
        assert_eq!(f(&[&[], &[0xab]]).to_string(), "::ab");
        let j = serde_json::to_value(&x).unwrap();
        assert_eq!(j, serde_json::json!(["01", "0000000000099828"]));
        assert_eq!(serde_json::from_value::<Fitness>(j).unwrap(), x);
        assert_eq!(x.encoded_len(), 4 + 5 + 12);
    }
}
