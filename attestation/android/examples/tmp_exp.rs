#![allow(clippy::unwrap_used, missing_docs)]
use enigm_android_attestation::*;
use openssl::x509::X509;
const T: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/testdata/android-attestation"
);
fn main() {
    let chain = parse_pem_chain(
        &std::fs::read_to_string(format!("{T}/caiman/sdk36/TEE_EC_RKP.pem")).unwrap(),
    )
    .unwrap();
    let leaf = chain[0].clone();
    let issuer_key = X509::from_der(&chain[1]).unwrap().public_key().unwrap();
    let muts: Vec<(&str, Vec<(usize, u8)>)> = vec![
        ("orig", vec![]),
        ("KU inner tag 03->04", vec![(709, 0x04)]),
        ("KU unused bits 8", vec![(711, 0x08)]),
        ("KU critical 0x01", vec![(706, 0x01)]),
        ("KU critical 0x00", vec![(706, 0x00)]),
        ("time month 13", vec![(93, b'1'), (94, b'3')]),
        ("time day 32", vec![(95, b'3'), (96, b'2')]),
        (
            "time Feb 30",
            vec![(93, b'0'), (94, b'2'), (95, b'3'), (96, b'0')],
        ),
        ("time letter", vec![(91, b'a')]),
        ("time no Z", vec![(101, b'0')]),
        ("time hour 25", vec![(97, b'2'), (98, b'5')]),
        ("time sec 60", vec![(101, b'6')]),
        ("subject utf8 invalid", vec![(130, 0x0c), (132, 0xff)]),
        ("subject utf8 ok", vec![(130, 0x0c)]),
        ("subject printable bad char", vec![(132, b'*')]),
        ("subject printable 0xff", vec![(132, 0xff)]),
        ("subject BMP", vec![(130, 0x1e)]),
        (
            "subject BMP surrogate",
            vec![(130, 0x1e), (132, 0xd8), (133, 0x00)],
        ),
        ("subject IA5 0xff", vec![(130, 0x16), (132, 0xff)]),
        ("subject teletex", vec![(130, 0x14)]),
        ("subject numeric", vec![(130, 0x12)]),
        ("subject octet string", vec![(130, 0x04)]),
        ("subject integer", vec![(130, 0x02)]),
        ("subject attr OID 0x80", vec![(127, 0x80)]),
        ("serial negative", vec![(15, 0x81)]),
        ("serial zero", vec![(15, 0x00)]),
        ("version 5", vec![(12, 0x05)]),
        ("version 0", vec![(12, 0x00)]),
        ("sig unused bits", vec![(725, 0x01)]),
        ("spki unused bits", vec![(177, 0x01)]),
        ("spki point 0x05", vec![(178, 0x05)]),
        ("spki point off curve", vec![(200, 0x00)]),
        ("spki curve oid", vec![(174, 0x08)]),
        ("tbs sigalg oid last", vec![(27, 0x03)]),
        ("ext oid 0x80", vec![(258, 0x80)]),
    ];
    for (name, m) in muts {
        let mut d = leaf.clone();
        for (o, b) in &m {
            d[*o] = *b;
        }
        let x = X509::from_der(&d);
        let desc = match &x {
            Ok(x) => format!(
                "OK pk={} sig={:?} ku={:?}",
                x.public_key().is_ok(),
                x.verify(&issuer_key),
                x.key_usage().is_some()
            ),
            Err(e) => format!("ERR {e}"),
        };
        println!("{name:30} {desc}");
    }
    println!("{:02x?}", &leaf[720..730]);
}
