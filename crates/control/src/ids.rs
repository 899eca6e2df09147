//! Ids of the records the API makes: a prefix naming the kind (`ca_`, `ep_`, `rd_`, `ag_`), then
//! the time in milliseconds and 80 random bits in hex, so lists (in id order) follow creation.

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};

use crate::api_error::ApiError;

/// A new id for a record of the kind `prefix` names, e.g. `ca_0195f3a2b4c1` + 20 hex digits.
pub(crate) fn new_id(prefix: &str) -> Result<String, ApiError> {
    let mut random = [0u8; 10];
    SystemRandom::new()
        .fill(&mut random)
        .map_err(|_| ApiError::internal("the system random generator failed"))?;
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    Ok(format!("{prefix}_{millis:012x}{}", hex::encode(random)))
}

#[cfg(test)]
mod tests {
    use super::new_id;

    #[test]
    fn ids_are_prefixed_unique_and_follow_creation() {
        let first = new_id("ca").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_id("ca").unwrap();
        assert!(
            first.starts_with("ca_") && first.len() == 3 + 12 + 20,
            "{first}"
        );
        assert!(first < second, "{first} {second}");
    }
}
