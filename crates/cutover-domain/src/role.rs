use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything in the workspace, including environments, tokens and protected environments.
    Owner,
    /// Reads, and writes to artifacts, versions and what is live.
    Editor,
    /// Reads only.
    Viewer,
    /// Resolve only, bound to one environment: what applications embed.
    Sdk,
}

/// The kind of access a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Resolve what is live (OFREP, native resolve, the change stream).
    Resolve,
    /// Read the workspace's objects.
    Read,
    /// Change artifacts, versions and pins.
    Write,
    /// Change the workspace's structure: environments, tokens, workspaces.
    Administer,
}

impl Role {
    pub const ALL: [Role; 4] = [Self::Owner, Self::Editor, Self::Viewer, Self::Sdk];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Editor => "editor",
            Self::Viewer => "viewer",
            Self::Sdk => "sdk",
        }
    }

    pub fn allows(self, access: Access) -> bool {
        match (self, access) {
            (_, Access::Resolve) => true,
            (Self::Sdk, _) => false,
            (_, Access::Read) => true,
            (Self::Owner | Self::Editor, Access::Write) => true,
            (Self::Owner, Access::Administer) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| DomainError::invalid("role", format!("{s:?} is not one of owner, editor, viewer, sdk")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_gets_exactly_its_access() {
        use Access::*;
        let table = [
            (Role::Owner, [true, true, true, true]),
            (Role::Editor, [true, true, true, false]),
            (Role::Viewer, [true, true, false, false]),
            (Role::Sdk, [true, false, false, false]),
        ];
        for (role, expected) in table {
            let got = [Resolve, Read, Write, Administer].map(|a| role.allows(a));
            assert_eq!(got, expected, "{role}");
        }
    }
}
