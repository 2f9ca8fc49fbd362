//! Conformance of the marshal reader with CPython: for every installed interpreter, every
//! `.pyc` of its own standard library is parsed by ppyc and by `marshal.loads` (in
//! `marshal_dump.py`), and both are reduced to the same canonical JSON.

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

use ppyc_compiler::marshal::{self, FloatRepr, Obj, Object, PyVersion};
use serde_json::{Value, json};

/// Decimal text of a base-2^15 magnitude (least significant digit first).
fn decimal(negative: bool, digits: &[u16]) -> String {
    // Base 10^9 limbs, least significant first.
    let mut limbs: Vec<u64> = vec![0];
    for &d in digits.iter().rev() {
        let mut carry = u64::from(d);
        for limb in &mut limbs {
            let v = *limb * (1 << 15) + carry;
            *limb = v % 1_000_000_000;
            carry = v / 1_000_000_000;
        }
        while carry > 0 {
            limbs.push(carry % 1_000_000_000);
            carry /= 1_000_000_000;
        }
    }
    let mut s = limbs.last().unwrap().to_string();
    for limb in limbs.iter().rev().skip(1) {
        s.push_str(&format!("{limb:09}"));
    }
    if negative && s != "0" {
        s.insert(0, '-');
    }
    s
}

fn float_hex(f: &FloatRepr) -> String {
    let bits = match f {
        FloatRepr::Bits(b) => *b,
        FloatRepr::Text(t) => std::str::from_utf8(t)
            .unwrap()
            .parse::<f64>()
            .unwrap()
            .to_bits(),
    };
    hex(&bits.to_le_bytes())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn bytes_hex(o: &Obj) -> String {
    match &**o {
        Object::Bytes(b) => hex(b),
        other => panic!("expected bytes, got {other:?}"),
    }
}

fn list(o: &Obj) -> Vec<Value> {
    match &**o {
        Object::Tuple(v) => v.iter().map(canon).collect(),
        other => panic!("expected a tuple, got {other:?}"),
    }
}

const CO_FAST_LOCAL: u8 = 0x20;
const CO_FAST_CELL: u8 = 0x40;
const CO_FAST_FREE: u8 = 0x80;

fn canon(o: &Obj) -> Value {
    match &**o {
        Object::None => json!(["None"]),
        Object::True => json!(["bool", true]),
        Object::False => json!(["bool", false]),
        Object::StopIteration => json!(["StopIteration"]),
        Object::Ellipsis => json!(["Ellipsis"]),
        Object::Int(i) => json!(["int", i.to_string()]),
        Object::Long { negative, digits } => json!(["int", decimal(*negative, digits)]),
        Object::Float(f) => json!(["float", float_hex(f)]),
        Object::Complex(re, im) => json!(["complex", float_hex(re), float_hex(im)]),
        Object::Bytes(b) => json!(["bytes", hex(b)]),
        Object::Str(s) => json!(["str", hex(s)]),
        Object::Tuple(v) => json!(["tuple", v.iter().map(canon).collect::<Vec<_>>()]),
        Object::FrozenSet(v) => {
            let mut items: Vec<Value> = v.iter().map(canon).collect();
            items.sort_by_cached_key(python_json);
            json!(["frozenset", items])
        }
        Object::Slice(a, b, c) => json!(["slice", canon(a), canon(b), canon(c)]),
        Object::Code(c) => {
            let names = list(&c.localsplusnames);
            let (varnames, cellvars, freevars) = match &c.localspluskinds {
                None => (
                    names,
                    list(c.cellvars.as_ref().unwrap()),
                    list(c.freevars.as_ref().unwrap()),
                ),
                Some(kinds) => {
                    let Object::Bytes(kinds) = &**kinds else {
                        panic!("kinds")
                    };
                    let pick = |bit: u8| -> Vec<Value> {
                        names
                            .iter()
                            .zip(kinds.iter())
                            .filter(|(_, k)| *k & bit != 0)
                            .map(|(n, _)| n.clone())
                            .collect()
                    };
                    (pick(CO_FAST_LOCAL), pick(CO_FAST_CELL), pick(CO_FAST_FREE))
                }
            };
            let mut f = json!({
                "argcount": c.argcount,
                "posonlyargcount": c.posonlyargcount,
                "kwonlyargcount": c.kwonlyargcount,
                "stacksize": c.stacksize,
                "flags": c.flags,
                "code": bytes_hex(&c.code),
                "consts": list(&c.consts),
                "names": list(&c.names),
                "varnames": varnames,
                "cellvars": cellvars,
                "freevars": freevars,
                "filename": canon(&c.filename),
                "name": canon(&c.name),
                "firstlineno": c.firstlineno,
                "linetable": bytes_hex(&c.linetable),
            });
            if let Some(q) = &c.qualname {
                f["qualname"] = canon(q);
            }
            if let Some(e) = &c.exceptiontable {
                f["exceptiontable"] = json!(bytes_hex(e));
            }
            json!(["code", f])
        }
        other => panic!("unexpected constant {other:?}"),
    }
}

/// `json.dumps(value)` with Python's default separators (for sorting frozenset items the
/// way the dumper does).
fn python_json(v: &Value) -> String {
    match v {
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(python_json).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), python_json(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Bool(true) => "true".into(),
        Value::Bool(false) => "false".into(),
        other => other.to_string(),
    }
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A canonical form (as `canon` makes it) without the code objects' `filename`, which
/// `same_code` ignores.
fn without_filenames(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(without_filenames).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| k.as_str() != "filename")
                .map(|(k, v)| (k.clone(), without_filenames(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[test]
fn every_stdlib_pyc_of_every_interpreter() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/marshal_dump.py");
    let pythons = common::pythons();
    assert!(!pythons.is_empty());
    for python in pythons {
        let mut child = Command::new(&python)
            .args(["-I", "-B"])
            .arg(&script)
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut checked = 0;
        let mut version = None;
        let mut previous: Option<(String, Vec<u8>, Value)> = None;
        let (mut redumps_differing, mut different_pairs) = (0, 0);
        for line in stdout.lines() {
            let line = line.unwrap();
            let expected: Value = serde_json::from_str(&line).unwrap();
            let pyc = expected["pyc"].as_str().unwrap();
            let data = std::fs::read(pyc).unwrap();
            let magic = [data[0], data[1], data[2], data[3]];
            let v =
                *version.get_or_insert_with(|| PyVersion::from_magic(magic).expect("known magic"));
            let payload = &data[16..];
            marshal::validate(payload, v).unwrap_or_else(|e| panic!("{pyc}: {e}"));
            let parsed = std::rc::Rc::new(
                marshal::parse(payload, v).unwrap_or_else(|e| panic!("{pyc}: {e}")),
            );
            let got = canon(&parsed);
            assert!(
                got == expected["code"],
                "{}: {pyc} differs from marshal.loads",
                python.display()
            );
            // `same_code` against independent bytes: the interpreter's own `marshal.dumps`
            // of the loaded code (the same code, often other bytes), and the previous file
            // (the same code exactly when the canonical forms agree but for filenames).
            let redump = unhex(expected["redump"].as_str().unwrap());
            assert!(
                marshal::same_code(payload, &redump, v),
                "{pyc}: marshal.dumps of its own code is other code"
            );
            redumps_differing += usize::from(redump != payload);
            if let Some((prev_pyc, prev_payload, prev_canon)) = &previous {
                let same = without_filenames(&got) == without_filenames(prev_canon);
                assert_eq!(
                    marshal::same_code(payload, prev_payload, v),
                    same,
                    "{pyc} against {prev_pyc}"
                );
                different_pairs += usize::from(!same);
            }
            // Every truncation of a small payload is refused.
            if payload.len() < 600 {
                for len in 0..payload.len() {
                    assert!(
                        marshal::parse(&payload[..len], v).is_err(),
                        "{pyc} truncated to {len}"
                    );
                }
            }
            checked += 1;
            previous = Some((pyc.to_owned(), payload.to_vec(), got));
        }
        assert!(
            child.wait().unwrap().success(),
            "{} dumper failed",
            python.display()
        );
        eprintln!(
            "{}: {checked} stdlib .pyc files match marshal.loads; {redumps_differing} re-marshalled differently, {different_pairs} neighbours differ",
            python.display()
        );
        assert!(
            checked > 500,
            "{}: only {checked} files compared",
            python.display()
        );
        // Neither comparison was trivial: bytes that differ, modules that differ.
        assert!(
            redumps_differing > 100 && different_pairs > 500,
            "{}: {redumps_differing} re-marshalled payloads differed, {different_pairs} \
             neighbours were other code",
            python.display()
        );
    }
}

#[test]
fn same_code_tells_modules_apart_and_ignores_filenames() {
    for python in common::pythons() {
        let out = Command::new(&python)
            .args(["-I", "-B", "-c"])
            .arg(
                "import marshal, sys\n\
                 a = compile('x = 1\\ndef f(y):\\n    return y + 1\\n', '/one/a.py', 'exec')\n\
                 b = compile('x = 1\\ndef f(y):\\n    return y + 1\\n', '/two/b.py', 'exec')\n\
                 c = compile('x = 2\\n', '/one/a.py', 'exec')\n\
                 import importlib.util\n\
                 sys.stdout.buffer.write(importlib.util.MAGIC_NUMBER)\n\
                 for co in (a, b, c):\n\
                 \x20   d = marshal.dumps(co)\n\
                 \x20   sys.stdout.buffer.write(len(d).to_bytes(4, 'little') + d)\n",
            )
            .output()
            .unwrap();
        assert!(out.status.success());
        let magic = [out.stdout[0], out.stdout[1], out.stdout[2], out.stdout[3]];
        let v = PyVersion::from_magic(magic).unwrap();
        let mut rest = &out.stdout[4..];
        let mut streams = Vec::new();
        while !rest.is_empty() {
            let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            streams.push(&rest[4..4 + n]);
            rest = &rest[4 + n..];
        }
        assert!(
            marshal::same_code(streams[0], streams[1], v),
            "only co_filename differs"
        );
        assert!(!marshal::same_code(streams[0], streams[2], v));
        assert!(!marshal::same_code(streams[0], b"garbage", v));
        let summary = marshal::summary(&marshal::parse(streams[0], v).unwrap());
        assert!(summary.contains("name: <module>"), "{summary}");
        assert!(summary.contains("nested code objects: 1"), "{summary}");
    }
}

/// The marshalled order of a set constant depends on the process that wrote it: on 3.10
/// it is the set's iteration order (the hash seed); 3.11+ sorts the elements by their own
/// marshalled bytes, which say whether that process had interned a string (one-character
/// strings are shared singletons, so any earlier `sys.intern('{')` shows). Two `.pyc` of
/// one source written by such processes hold the same code (`ppyc verify` called freshly
/// installed modules "different"); sets with other elements, or with elements of other
/// types, still differ.
#[test]
fn same_code_compares_sets_as_sets() {
    const SOURCE: &str = "def f(x):\n    return x in {'alpha', 'beta', 'gamma', '{', '}', '*', '-', \
                          'x y', 'u v', b'iota', (1, 'kappa'), '[', ']'}\n\
                          for c in {'lambda', '(', ')', 'pi'}:\n    pass\n";
    // The code of `source` marshalled by a process with hash seed `seed` that first
    // interned `interned` (each a one-character string).
    let dump = |python: &Path, source: &str, seed: u32, interned: &str| -> (PyVersion, Vec<u8>) {
        // No -I/-E here: they would make the interpreter ignore PYTHONHASHSEED.
        let out = Command::new(python)
            .args(["-S", "-s", "-B", "-c"])
            .arg(format!(
                "import marshal, sys, importlib.util\n\
                 for ch in {interned:?}:\n    sys.intern(ch)\n\
                 co = compile({source:?}, '/m.py', 'exec')\n\
                 sys.stdout.buffer.write(importlib.util.MAGIC_NUMBER + marshal.dumps(co))\n"
            ))
            .env("PYTHONHASHSEED", seed.to_string())
            .env_remove("PYTHONPATH")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let magic = [out.stdout[0], out.stdout[1], out.stdout[2], out.stdout[3]];
        (
            PyVersion::from_magic(magic).unwrap(),
            out.stdout[4..].to_vec(),
        )
    };
    let pythons = common::pythons();
    assert!(!pythons.is_empty(), "no interpreter to test with");
    for python in pythons {
        let (v, first) = dump(&python, SOURCE, 1, "");
        // Another writing process whose bytes differ. 3.13 interns every one-character
        // string at start-up, and we found no process state that changes its order.
        let natural = (2..50)
            .map(|seed| dump(&python, SOURCE, seed, "{}[(").1)
            .find(|bytes| *bytes != first);
        assert!(
            natural.is_some() || v >= PyVersion::V3_13,
            "{}: the set order never changed with the writing process",
            python.display()
        );
        // On every version, a writer that put two elements in the other order: 'x y' and
        // 'u v' swapped in place. Both have the same length and the same flags (unshared,
        // or both with FLAG_REF and no later reference), so no reference numbering changes.
        let find = |text: &[u8]| {
            let hits: Vec<usize> = (0..first.len() - text.len() - 1)
                .filter(|&i| first[i + 1] == 3 && first[i + 2..].starts_with(text))
                .filter(|&i| first[i] & 0x7f == b'z')
                .collect();
            assert_eq!(hits.len(), 1, "{}: {text:?} in {first:?}", python.display());
            hits[0]
        };
        let (i, j) = (find(b"x y"), find(b"u v"));
        assert_eq!(first[i], first[j], "the same flags");
        let mut swapped = first.clone();
        swapped[i + 2..i + 5].copy_from_slice(b"u v");
        swapped[j + 2..j + 5].copy_from_slice(b"x y");
        assert!(marshal::validate(&swapped, v).is_ok());
        for other in natural.iter().chain([&swapped]) {
            assert!(
                marshal::same_code(&first, other, v),
                "{}: the same sets in another order",
                python.display()
            );
        }
        for changed in [
            SOURCE.replace("'gamma'", "'gamma2'"),
            SOURCE.replace("b'iota'", "'iota'"),
            SOURCE.replace("(1, 'kappa')", "(True, 'kappa')"),
            SOURCE.replace("'['", "'<'"),
            SOURCE.replace("'pi'}", "'pi', 'rho'}"),
        ] {
            let (_, bytes) = dump(&python, &changed, 1, "");
            assert!(
                !marshal::same_code(&first, &bytes, v),
                "{}: {changed:?} is other code",
                python.display()
            );
        }
    }
}
