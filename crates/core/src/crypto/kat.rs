//! Known-answer tests from the standards' own examples. If a crate update changed a primitive's
//! output, these fail before any stored value or signature could be affected.

use super::soft::{verify, SoftSigner, SM2_ID};
use super::{Signer, Suite};

fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text.replace(' ', "")).unwrap()
}

/// GB/T 32905-2016, Appendix A, example 1: SM3("abc").
#[test]
fn sm3_example_1_abc() {
    assert_eq!(
        Suite::National.digest(&[b"abc"]).to_vec(),
        unhex("66c7f0f4 62eeedd9 d1f2d46b dc10e4e2 4167c487 5cf2f7a2 297da02b 8f4ba8e0")
    );
}

/// GB/T 32905-2016, Appendix A, example 2: SM3 of "abcd" repeated 16 times (512 bits).
#[test]
fn sm3_example_2_abcd_16_times() {
    let message = b"abcd".repeat(16);
    assert_eq!(
        Suite::National.digest(&[&message]).to_vec(),
        unhex("debe9ff9 2275b8a1 38604889 c18e5a4d 6fdb70e5 387e5765 293dcba3 9c0c5732")
    );
}

/// GB/T 32907-2016, Appendix A, example 1 (one block) and example 2 (the same block encrypted
/// 1,000,000 times).
#[test]
fn sm4_examples_1_and_2() {
    use sm4::cipher::{BlockCipherEncrypt, KeyInit};
    let key = unhex("01234567 89abcdef fedcba98 76543210");
    let cipher = sm4::Sm4::new_from_slice(&key).unwrap();
    let mut block = sm4::cipher::Block::<sm4::Sm4>::try_from(key.as_slice()).unwrap();
    cipher.encrypt_block(&mut block);
    assert_eq!(block.to_vec(), unhex("681edf34 d206965e 86b3e94f 536e4246"));
    for _ in 1..1_000_000 {
        cipher.encrypt_block(&mut block);
    }
    assert_eq!(block.to_vec(), unhex("595298c7 c6fd271f 0402f804 c33d3f66"));
}

/// RFC 8998, Appendix A.1: SM4-GCM (the mode the gateway seals with; GB/T 32907 defines the block
/// cipher, GB/T 36624 the GCM mode).
#[test]
fn sm4_gcm_rfc8998_example() {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    type Sm4Gcm = aes_gcm::AesGcm<sm4::Sm4, aes_gcm::aead::consts::U12>;
    let cipher = Sm4Gcm::new_from_slice(&unhex("0123456789ABCDEFFEDCBA9876543210")).unwrap();
    let nonce: [u8; 12] = unhex("00001234567800000000ABCD").try_into().unwrap();
    let plaintext = unhex(
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD\
         EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA",
    );
    let aad = unhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2");
    let sealed = cipher
        .encrypt(
            &nonce.into(),
            Payload {
                msg: &plaintext,
                aad: &aad,
            },
        )
        .unwrap();
    let expected_ct = unhex(
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735\
         D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D",
    );
    let expected_tag = unhex("83DE3541E4C2B58177E065A9BF7B62EC");
    assert_eq!(&sealed[..plaintext.len()], expected_ct.as_slice());
    assert_eq!(&sealed[plaintext.len()..], expected_tag.as_slice());
}

/// GB/T 32918.5-2017 (parameters), signature example on the recommended curve: the public key
/// derived from the example's private key, and the example's signature (r, s) of "message digest"
/// under the default identifier, which must verify; any change to message or signature must not.
#[test]
fn sm2_signature_example_on_the_recommended_curve() {
    let private = unhex("3945208F 7B2144B1 3F36E38A C6D39F95 88939369 2860B51A 42FB81EF 4DF7C5B8");
    let public = unhex(
        "04 09F9DF31 1E5421A1 50DD7D16 1E4BC5C6 72179FAD 1833FC07 6BB08FF3 56F35020 \
            CCEA490C E26775A5 2DC6EA71 8CC1AA60 0AED05FB F35E084A 6632F607 2DA9AD13",
    );
    let signer = SoftSigner::from_secret(Suite::National, "kat", &private).unwrap();
    assert_eq!(signer.public_key(), public);
    assert_eq!(SM2_ID, "1234567812345678");
    let signature = unhex(
        "F5A03B06 48D2C463 0EEAC513 E1BB81A1 5944DA38 27D5B741 43AC7EAC EEE720B3 \
         B1B6AA29 DF212FD8 763182BC 0D421CA1 BB9038FD 1F7F42D4 840B69C4 85BBC1AA",
    );
    assert!(verify(
        Suite::National,
        &public,
        b"message digest",
        &signature
    ));
    assert!(!verify(
        Suite::National,
        &public,
        b"message digesT",
        &signature
    ));
    let mut altered = signature.clone();
    altered[63] ^= 1;
    assert!(!verify(
        Suite::National,
        &public,
        b"message digest",
        &altered
    ));
    // A fresh signature by the same key verifies too (its nonce is random, so it differs).
    let fresh = signer.sign(b"message digest").unwrap();
    assert!(verify(Suite::National, &public, b"message digest", &fresh));
}

/// HMAC-SM3 and HMAC-SHA-256 (RFC 2104 over the suite's hash): RFC 4231 test case 2 for SHA-256;
/// for SM3 the same construction checked against the hash itself.
#[test]
fn keyed_hashes() {
    assert_eq!(
        Suite::International
            .keyed_hash(b"Jefe", b"what do ya want for nothing?")
            .to_vec(),
        unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    );
    // RFC 2104: H((K ^ opad) || H((K ^ ipad) || m)), K zero-padded to the 64-byte block.
    let key = b"Jefe";
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Suite::National.digest(&[&ipad, b"what do ya want for nothing?"]);
    let outer = Suite::National.digest(&[&opad, &inner]);
    assert_eq!(
        Suite::National.keyed_hash(key, b"what do ya want for nothing?"),
        outer
    );
}
