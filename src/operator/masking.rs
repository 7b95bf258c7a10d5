//! Masking of what roles without full values see: resident ID and phone numbers in every string,
//! number and key of a JSON answer (`crate::disclosure::mask_for_operators`).

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

/// Resident ID and phone numbers masked in every string of a JSON answer (viewers, operators).
pub(super) async fn masked(resp: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let (parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(never) => match never {},
    };
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Response::from_parts(parts, Full::new(bytes));
    };
    mask_value(&mut value);
    Response::from_parts(
        parts,
        Full::new(Bytes::from(serde_json::to_vec(&value).unwrap_or_default())),
    )
}

pub fn mask_value(v: &mut serde_json::Value) {
    use crate::disclosure::mask_for_operators;
    match v {
        serde_json::Value::String(s) => {
            let m = mask_for_operators(s);
            if m != *s {
                *s = m;
            }
        }
        // A phone number sent as a JSON number is still a phone number.
        serde_json::Value::Number(n) => {
            let text = n.to_string();
            let m = mask_for_operators(&text);
            if m != text {
                *v = serde_json::Value::String(m);
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(mask_value),
        serde_json::Value::Object(o) => {
            let entries = std::mem::take(o);
            for (key, mut value) in entries {
                mask_value(&mut value);
                o.insert(mask_for_operators(&key), value);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_reaches_numbers_and_keys() {
        let mut v = serde_json::json!({
            "phone": 13812345678u64,
            "440106198001011230": "x",
            "nested": ["id 440106198001011230", 12],
        });
        mask_value(&mut v);
        let text = v.to_string();
        assert!(
            !text.contains("13812345678") && !text.contains("198001011230"),
            "{text}"
        );
        assert_eq!(v["nested"][1], 12, "other numbers stay numbers");
    }
}
