//! The SSRF guard's resolver for reqwest; the rules are `shared::ssrf`.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
pub use shared::ssrf::{check_url, refusal, resolve_public, Refused};

/// Resolves with the system resolver and keeps only public addresses; a host
/// with none left fails with [`Refused::Host`], which the caller finds in the
/// request error's source chain.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs = resolve_public(&host).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}
