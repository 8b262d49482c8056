//! API tokens: made from 32 random bytes, shown once, stored only as their SHA-256, and what a
//! token may see: an operator token every account, an account token its account and every
//! account below it.

use crate::store::ledger_store::TokenScope;
use sha2::{Digest, Sha256};

/// Every token starts with this, so a leaked one is recognisable in logs and scanners.
pub const TOKEN_PREFIX: &str = "tg_";

/// A new token (to show once) and its SHA-256 (to store).
pub fn new_token() -> anyhow::Result<(String, String)> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|error| anyhow::anyhow!("no randomness: {error}"))?;
    let token = format!("{TOKEN_PREFIX}{}", hex(&bytes));
    let digest = token_sha256(&token);
    Ok((token, digest))
}

pub fn token_sha256(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// True when `scope` may see the account whose ancestry (the account, then its ancestors) is
/// `ancestry`: the operator sees every account that exists, an account token its own account and
/// those below it.
pub fn may_see(scope: &TokenScope, ancestry: &[String]) -> bool {
    match scope {
        TokenScope::Operator => !ancestry.is_empty(),
        TokenScope::Account(own) => ancestry.contains(own),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_token_sees_its_subtree_only() {
        let ancestry = |account: &str| -> Vec<String> {
            let chain: &[&str] = match account {
                "root" => &["root"],
                "reseller" => &["reseller", "root"],
                "shop" => &["shop", "reseller", "root"],
                "stranger" => &["stranger"],
                _ => &[],
            };
            chain.iter().map(|id| id.to_string()).collect()
        };
        let reseller = TokenScope::Account("reseller".into());
        let cases = [
            (&reseller, "reseller", true),
            (&reseller, "shop", true),
            (&reseller, "root", false),
            (&reseller, "stranger", false),
            (&reseller, "nobody", false),
            (&TokenScope::Operator, "stranger", true),
            (&TokenScope::Operator, "nobody", false),
        ];
        for (scope, account, visible) in cases {
            assert_eq!(
                may_see(scope, &ancestry(account)),
                visible,
                "{scope:?} {account}"
            );
        }
    }

    #[test]
    fn tokens_are_random_and_stored_by_digest() {
        let (first, digest) = new_token().unwrap();
        let (second, _) = new_token().unwrap();
        assert_ne!(first, second);
        assert!(first.starts_with(TOKEN_PREFIX) && first.len() == 3 + 64);
        assert_eq!(digest, token_sha256(&first));
        assert!(!digest.contains(&first[3..]));
    }
}
