//! Octez's Merkle trees over operations (spec §2.7, `Generic_Merkle_tree`
//! in `src/lib_crypto/blake2B.ml`) and the path of an
//! `Operations_for_blocks` answer.

use serde::de::Error as _;
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use tezos_p2p_wire::encoding::{DecodeError, EncodeError, WriteExt};

use crate::cursor::{Cur, Res};
use crate::hash::{blake2b_256, blake2b_256_pair};
use crate::{OperationHash, OperationListHash, OperationListListHash};

/// `operation_max_pass`: the path bound is computed from it.
pub const OPERATION_MAX_PASS: usize = 8;
/// Octez's `log2` (`if x ≤ 1 then 0 else 1 + log2 ((x + 1) / 2)`).
const fn log2(x: usize) -> usize {
    if x <= 1 {
        0
    } else {
        1 + log2(x.div_ceil(2))
    }
}
/// Deepest path allowed: `log2 operation_max_pass` = 3.
pub const MAX_PATH_DEPTH: usize = log2(OPERATION_MAX_PASS);
/// `check_size` of a path: `depth · 33 + 1` = 100 bytes.
pub const MAX_PATH_SIZE: usize = MAX_PATH_DEPTH * 33 + 1;

const TAG_LEFT: u8 = 0xF0;
const TAG_RIGHT: u8 = 0x0F;
const TAG_OP: u8 = 0x00;

/// Octez's `Generic_Merkle_tree.compute` over 32-byte elements: empty
/// tree `H("")`, `leaf x = H(x)`, `node a b = H(a ‖ b)`, padding with the
/// last leaf and then with `node(pad, pad)`, ported step by step.
fn merkle_root(xs: &[[u8; 32]]) -> [u8; 32] {
    let n = xs.len();
    match xs {
        [] => blake2b_256(b""),
        [x] => blake2b_256(x),
        [.., last] => {
            let mut a = vec![blake2b_256(last); n + 1];
            for (slot, x) in a.iter_mut().zip(xs) {
                *slot = blake2b_256(x);
            }
            step(&mut a, n)
        }
    }
}

/// `step a n` of `Generic_Merkle_tree`: `a` has at least `n + 1` entries.
fn step(a: &mut [[u8; 32]], mut n: usize) -> [u8; 32] {
    loop {
        let m = n.div_ceil(2);
        for i in 0..m {
            a[i] = blake2b_256_pair(&a[2 * i], &a[2 * i + 1]);
        }
        a[m] = blake2b_256_pair(&a[n], &a[n]);
        if m == 1 {
            return a[0];
        }
        if m.is_multiple_of(2) {
            n = m;
        } else {
            a[m + 1] = a[m];
            n = m + 1;
        }
    }
}

/// `Operation_list_hash.compute`: the Merkle root of one validation pass's
/// operation hashes. The empty list gives BLAKE2b-256 of nothing.
pub fn operation_list_hash(ops: &[OperationHash]) -> OperationListHash {
    let xs: Vec<[u8; 32]> = ops.iter().map(|h| *h.as_bytes()).collect();
    OperationListHash::from_bytes(merkle_root(&xs))
}

/// `Operation_list_list_hash.compute`: the Merkle root of the list hashes
/// of all validation passes (a header's `operations_hash`).
pub fn operation_list_list_hash(lists: &[OperationListHash]) -> OperationListListHash {
    let xs: Vec<[u8; 32]> = lists.iter().map(|h| *h.as_bytes()).collect();
    OperationListListHash::from_bytes(merkle_root(&xs))
}

/// One step of a Merkle path, from the root down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathStep {
    /// `Left(p, right)` (tag `f0`): the leaf is on the left, `right` is the
    /// sibling subtree's hash.
    Left {
        /// Hash of the right sibling.
        right: OperationListListHash,
    },
    /// `Right(left, p)` (tag `0f`): the leaf is on the right.
    Right {
        /// Hash of the left sibling.
        left: OperationListListHash,
    },
}

/// An `Operation_list_list_hash.path`, flattened: the steps from the root
/// (outermost) down to the leaf; the final `Op` is implicit.
///
/// On the wire `Left(p, r)` is `f0 ‖ p ‖ r` and `Right(l, p)` is
/// `0f ‖ l ‖ p`, `Op` is `00`: all tags and left siblings come first, then
/// the right siblings innermost first. In JSON it is the list of steps in
/// this order ending with the leaf: `[{"case": "Left", "right": "LLo…"},
/// {"case": "Right", "left": "LLo…"}, …, {"case": "Op"}]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MerklePath(pub Vec<PathStep>);

impl MerklePath {
    /// The path of the leaf alone (`Op`).
    pub const OP: MerklePath = MerklePath(Vec::new());

    /// Octez's `check_path`: the root this path leads to from `leaf` (a
    /// validation pass's list hash), and the leaf's position (for an
    /// answer to be accepted, the block's `operations_hash` and the
    /// validation pass).
    pub fn check(&self, leaf: &OperationListHash) -> (OperationListListHash, usize) {
        let mut h = blake2b_256(leaf.as_bytes());
        let mut width = 1usize;
        let mut pos = 0usize;
        for step in self.0.iter().rev() {
            h = match step {
                PathStep::Left { right } => blake2b_256_pair(&h, right.as_bytes()),
                PathStep::Right { left } => {
                    pos = pos.saturating_add(width);
                    blake2b_256_pair(left.as_bytes(), &h)
                }
            };
            width = width.saturating_mul(2);
        }
        (OperationListListHash::from_bytes(h), pos)
    }

    /// Octez's `compute_path`: the path of element `index` of `lists`
    /// (`None` if out of range).
    pub fn compute(lists: &[OperationListHash], index: usize) -> Option<MerklePath> {
        let n = lists.len();
        if index >= n {
            return None;
        }
        if n == 1 {
            return Some(MerklePath::OP);
        }
        let last = lists[n - 1].as_bytes();
        let mut a = vec![blake2b_256(last); n + 1];
        for (slot, x) in a.iter_mut().zip(lists) {
            *slot = blake2b_256(x.as_bytes());
        }
        // Steps innermost first, reversed at the end.
        let mut steps = Vec::new();
        let (mut n, mut j) = (n, index);
        loop {
            let m = n.div_ceil(2);
            steps.push(if j % 2 == 0 {
                PathStep::Left {
                    right: OperationListListHash::from_bytes(a[j + 1]),
                }
            } else {
                PathStep::Right {
                    left: OperationListListHash::from_bytes(a[j - 1]),
                }
            });
            for i in 0..m {
                a[i] = blake2b_256_pair(&a[2 * i], &a[2 * i + 1]);
            }
            a[m] = blake2b_256_pair(&a[n], &a[n]);
            if m == 1 {
                break;
            }
            if m % 2 == 0 {
                n = m;
            } else {
                a[m + 1] = a[m];
                n = m + 1;
            }
            j /= 2;
        }
        steps.reverse();
        Some(MerklePath(steps))
    }

    /// Bytes of the encoding.
    pub fn encoded_len(&self) -> usize {
        1 + 33 * self.0.len()
    }

    /// `Size_limit_exceeded` unless the path fits the 100-byte bound.
    pub(crate) fn check_bound(&self) -> Result<(), EncodeError> {
        let size = self.encoded_len();
        if size > MAX_PATH_SIZE {
            return Err(EncodeError::SizeLimitExceeded {
                size,
                limit: MAX_PATH_SIZE,
            });
        }
        Ok(())
    }

    /// Appends the encoding (no bound checked).
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        for s in &self.0 {
            match s {
                PathStep::Left { .. } => out.put_u8(TAG_LEFT),
                PathStep::Right { left } => {
                    out.put_u8(TAG_RIGHT);
                    out.extend_from_slice(left.as_bytes());
                }
            }
        }
        out.put_u8(TAG_OP);
        for s in self.0.iter().rev() {
            if let PathStep::Left { right } = s {
                out.extend_from_slice(right.as_bytes());
            }
        }
    }

    /// The bounded path (`check_size 100`, not spanning its context), read
    /// in Octez's order.
    pub(crate) fn decode(c: &mut Cur<'_>) -> Res<MerklePath> {
        c.check_size(MAX_PATH_SIZE, false, |c| {
            let mut steps = Vec::new();
            loop {
                match c.u8()? {
                    TAG_LEFT => steps.push(PathStep::Left {
                        right: OperationListListHash::from_bytes([0; 32]),
                    }),
                    TAG_RIGHT => steps.push(PathStep::Right {
                        left: OperationListListHash::from_bytes(c.fixed()?),
                    }),
                    TAG_OP => break,
                    t => return Err(DecodeError::UnexpectedTag(u16::from(t)).into()),
                }
            }
            for s in steps.iter_mut().rev() {
                if let PathStep::Left { right } = s {
                    *right = OperationListListHash::from_bytes(c.fixed()?);
                }
            }
            Ok(MerklePath(steps))
        })
    }
}

impl Serialize for MerklePath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(tag = "case")]
        enum Step<'a> {
            Left { right: &'a OperationListListHash },
            Right { left: &'a OperationListListHash },
            Op,
        }
        let mut seq = s.serialize_seq(Some(self.0.len() + 1))?;
        for st in &self.0 {
            seq.serialize_element(&match st {
                PathStep::Left { right } => Step::Left { right },
                PathStep::Right { left } => Step::Right { left },
            })?;
        }
        seq.serialize_element(&Step::Op)?;
        seq.end()
    }
}

impl<'de> Deserialize<'de> for MerklePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = Vec::<Value>::deserialize(d)?;
        let Some((op, steps)) = items.split_last() else {
            return Err(D::Error::custom("a path ends with {\"case\": \"Op\"}"));
        };
        let case = |v: &Value| v.get("case").and_then(Value::as_str).map(str::to_owned);
        if case(op).as_deref() != Some("Op") {
            return Err(D::Error::custom("a path ends with {\"case\": \"Op\"}"));
        }
        let hash = |v: &Value, key: &str| {
            serde_json::from_value::<OperationListListHash>(v.get(key).cloned().unwrap_or_default())
                .map_err(|e| D::Error::custom(format!("path step {key}: {e}")))
        };
        steps
            .iter()
            .map(|v| match case(v).as_deref() {
                Some("Left") => Ok(PathStep::Left {
                    right: hash(v, "right")?,
                }),
                Some("Right") => Ok(PathStep::Right {
                    left: hash(v, "left")?,
                }),
                _ => Err(D::Error::custom(format!(
                    "path step {v}: expected case Left or Right (Op only last)"
                ))),
            })
            .collect::<Result<_, _>>()
            .map(MerklePath)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cursor::whole;

    fn lh(i: u8) -> OperationListHash {
        OperationListHash::from_bytes([i; 32])
    }

    #[test]
    fn empty_and_single_trees() {
        assert_eq!(
            operation_list_hash(&[]).as_bytes(),
            &blake2b_256(b""),
            "empty list: BLAKE2b-256 of nothing"
        );
        assert_eq!(
            operation_list_hash(&[]).to_string(),
            "Lovtotjuae3fq7XNBpVFpSpjWaY8HXReca9gfsUwCKMc7Dy4gPWG"
        );
        assert_eq!(
            operation_list_list_hash(&[]).to_string(),
            "LLoZS2LW3rEi7KYU4ouBQtorua37aWWCtpDmv1n2x3xoKi6sVXLWp"
        );
        let one = OperationHash::from_bytes([5; 32]);
        assert_eq!(
            operation_list_hash(&[one]).as_bytes(),
            &blake2b_256(one.as_bytes())
        );
        // The sibling seen in TezEdge's fixtures is leaf(empty list hash).
        assert_eq!(
            OperationListListHash::from_bytes(blake2b_256(operation_list_hash(&[]).as_bytes()))
                .to_string(),
            "LLoaGLRPRx3Zf8kB4ACtgku8F4feeBiskeb41J1ciwfcXB3KzHKXc"
        );
    }

    #[test]
    fn two_and_three_leaves_by_hand() {
        let (a, b, c) = (lh(1), lh(2), lh(3));
        let leaf = |h: &OperationListHash| blake2b_256(h.as_bytes());
        let node = |x: &[u8; 32], y: &[u8; 32]| blake2b_256_pair(x, y);
        assert_eq!(
            operation_list_list_hash(&[a, b]).as_bytes(),
            &node(&leaf(&a), &leaf(&b))
        );
        // n = 3: [A B C | pad C] -> [AB C·C | pad] -> root.
        let ab = node(&leaf(&a), &leaf(&b));
        let cc = node(&leaf(&c), &leaf(&c));
        assert_eq!(
            operation_list_list_hash(&[a, b, c]).as_bytes(),
            &node(&ab, &cc)
        );
    }

    #[test]
    fn computed_paths_check_to_the_root_and_position() {
        for n in 1..=20u8 {
            let lists: Vec<_> = (0..n).map(lh).collect();
            let root = operation_list_list_hash(&lists);
            for i in 0..usize::from(n) {
                let p = MerklePath::compute(&lists, i).unwrap();
                assert_eq!(p.check(&lists[i]), (root, i), "n {n} i {i}");
                let mut bytes = Vec::new();
                p.write(&mut bytes);
                assert_eq!(bytes.len(), p.encoded_len());
                if p.encoded_len() <= MAX_PATH_SIZE {
                    assert_eq!(whole(&bytes, MerklePath::decode), Ok(p.clone()));
                }
                let j = serde_json::to_value(&p).unwrap();
                assert_eq!(serde_json::from_value::<MerklePath>(j).unwrap(), p);
            }
            assert_eq!(MerklePath::compute(&lists, usize::from(n)), None);
        }
    }

    #[test]
    fn wire_order_of_nested_steps() {
        let (x, y) = (
            OperationListListHash::from_bytes([0xAA; 32]),
            OperationListListHash::from_bytes([0xBB; 32]),
        );
        // Left(Left(Op, X), Y) is f0 f0 00 X Y.
        let p = MerklePath(vec![
            PathStep::Left { right: y },
            PathStep::Left { right: x },
        ]);
        let mut out = Vec::new();
        p.write(&mut out);
        let mut want = vec![0xF0, 0xF0, 0x00];
        want.extend_from_slice(&[0xAA; 32]);
        want.extend_from_slice(&[0xBB; 32]);
        assert_eq!(out, want);
        assert_eq!(whole(&out, MerklePath::decode), Ok(p));
        // Depth 4 is over the bound.
        let deep = MerklePath(vec![PathStep::Right { left: x }; 4]);
        assert!(deep.check_bound().is_err());
        let mut out = Vec::new();
        deep.write(&mut out);
        assert!(matches!(
            whole(&out, MerklePath::decode),
            Err(DecodeError::SizeLimitExceeded { .. })
        ));
        assert_eq!(
            whole(&[0x01], MerklePath::decode),
            Err(DecodeError::UnexpectedTag(1))
        );
    }

    #[test]
    fn json_needs_a_final_op() {
        let bad = serde_json::json!([{"case": "Op"}, {"case": "Op"}]);
        assert!(serde_json::from_value::<MerklePath>(bad).is_err());
        assert!(serde_json::from_value::<MerklePath>(serde_json::json!([])).is_err());
        assert_eq!(
            serde_json::from_value::<MerklePath>(serde_json::json!([{"case": "Op"}])).unwrap(),
            MerklePath::OP
        );
    }
}
