//! Who may change what is live where, checked by the CLI before a write that would otherwise
//! fail for another reason first (publishing into a taken environment answers "taken" before it
//! answers "not allowed"). The server's rule, which this mirrors and which still decides: owners
//! may change protected environments; a token limited to some environments acts only on those,
//! and may change them even when protected.

use cutover_api::{Environment, Token};

use super::Context;

/// Refuses, naming the first environment the token cannot change, before anything is written.
pub async fn check_pin_rights(context: &Context, environments: &[String]) -> anyhow::Result<()> {
    let me = context.client.whoami().await?;
    for name in environments {
        let environment = context.client.get_environment(name).await?;
        if let Some(why) = refusal(&me.token, &environment) {
            return Err(anyhow::anyhow!("{why}; nothing was published"));
        }
    }
    Ok(())
}

/// Why `token` may not change what is live in `environment`, or `None` when it may.
pub fn refusal(token: &Token, environment: &Environment) -> Option<String> {
    let name = environment.name.as_str();
    let scoped_here = token.environments.iter().any(|scope| scope == name);
    if !token.environments.is_empty() && !scoped_here {
        return Some(format!(
            "this token ({}) is limited to {} and cannot change what is live in {name}",
            token.name,
            token.environments.join(", ")
        ));
    }
    if environment.protected && token.role != "owner" && !scoped_here {
        return Some(format!(
            "{name} is protected: only owners, or tokens limited to {name}, can change what is live there (this \
             token, {}, has the role {})",
            token.name, token.role
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use cutover_api::{Environment, Token};

    use super::refusal;

    fn token(role: &str, environments: &[&str]) -> Token {
        Token {
            id: "t1".into(),
            name: "ci".into(),
            role: role.into(),
            environments: environments.iter().map(|e| (*e).to_owned()).collect(),
            created_at: String::new(),
            created_by: None,
            revoked_at: None,
        }
    }

    fn environment(name: &str, protected: bool) -> Environment {
        Environment {
            name: name.into(),
            description: String::new(),
            protected,
            targets: Vec::new(),
            position: 1,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn an_editor_may_not_change_a_protected_environment() {
        let why = refusal(&token("editor", &[]), &environment("production", true)).unwrap();
        assert_eq!(
            why,
            "production is protected: only owners, or tokens limited to production, can change what is live there \
             (this token, ci, has the role editor)"
        );
        assert_eq!(refusal(&token("editor", &[]), &environment("staging", false)), None);
    }

    #[test]
    fn owners_and_tokens_limited_to_it_may() {
        assert_eq!(refusal(&token("owner", &[]), &environment("production", true)), None);
        assert_eq!(refusal(&token("editor", &["production"]), &environment("production", true)), None);
    }

    #[test]
    fn a_limited_token_may_not_act_outside_its_environments() {
        let why = refusal(&token("owner", &["dev"]), &environment("staging", false)).unwrap();
        assert_eq!(why, "this token (ci) is limited to dev and cannot change what is live in staging");
    }
}
