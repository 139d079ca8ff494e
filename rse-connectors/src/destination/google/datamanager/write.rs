//! One batch: its removals, then its additions, each data type in requests of its own of
//! at most `max_members_per_request` members; a member Google refuses by name is rejected
//! and its request sent again without it.

use rse_core::{ChangeBatch, DestinationError, WriteOutcome};

use super::wire::{self, ConsentJson, DataType, IngestRequest, Member, RemoveRequest, TermsOfService};
use super::{GoogleDataManagerDestination, Kind, Sent, check_member};
use crate::audience::{
    AudiencePlan, GoogleDataManagerNormalizer, IdentifierKind, MemberIds, Normalized, PlannedMember, memo_ids,
    plan_batch,
};

/// The parts of an address identifier.
const ADDRESS: [IdentifierKind; 4] =
    [IdentifierKind::FirstName, IdentifierKind::LastName, IdentifierKind::Country, IdentifierKind::PostalCode];

/// The members of one data type to send, with the batch position of each one's change.
#[derive(Default)]
struct Outgoing {
    changes: Vec<usize>,
    members: Vec<Member>,
}

impl GoogleDataManagerDestination {
    /// Writes `batch`; with `validate_only`, Google checks every request and applies none
    /// (the answer says what it would refuse).
    pub(super) async fn write_batch(
        &self,
        batch: &ChangeBatch,
        validate_only: bool,
    ) -> Result<WriteOutcome, DestinationError> {
        if batch.is_empty() {
            return rse_core::WriteOutcomes::new(0).finish(&self.name);
        }
        let fields = self.bound(&batch.schema)?;
        let mut plan = plan_batch(batch, &fields, &GoogleDataManagerNormalizer);
        let (removes, _) = self.outgoing(batch, &plan.removes, Kind::Remove);
        for (data_type, outgoing) in removes {
            self.send_all(Kind::Remove, data_type, outgoing, &mut plan, validate_only).await?;
        }
        let (adds, sendable) = self.outgoing(batch, &plan.adds, Kind::Ingest);
        let unsendable: Vec<usize> =
            plan.adds.iter().map(|m| m.change).filter(|&c| !sendable.get(c).copied().unwrap_or(false)).collect();
        for change in unsendable {
            plan.refuse(
                change,
                "no identifier Google Customer Match takes: an address needs a first name, a last name, a country \
                 and a postal code together",
            );
        }
        for (data_type, outgoing) in adds {
            self.send_all(Kind::Ingest, data_type, outgoing, &mut plan, validate_only).await?;
        }
        plan.finish(batch, &self.name)
    }

    /// The members of `planned` as Google takes them, by data type (user data first), and
    /// which changes of the batch have a member to send.
    fn outgoing(
        &self,
        batch: &ChangeBatch,
        planned: &[PlannedMember],
        kind: Kind,
    ) -> (Vec<(DataType, Outgoing)>, Vec<bool>) {
        let mut sendable = vec![false; batch.len()];
        let mut user = Outgoing::default();
        let mut mobile = Outgoing::default();
        let default_country = self.config.audience.default_country.as_deref().map(str::to_ascii_uppercase);
        for member in planned {
            let ids = match kind {
                // An address leaves as a whole: a changed part removes the old address,
                // whose other parts come from the memo.
                Kind::Remove if ADDRESS.iter().any(|k| member.ids.get(*k).is_some()) => {
                    let old = memo_ids(batch.changes.get(member.change).and_then(|c| c.memo.as_ref()));
                    let parts =
                        MemberIds::new(old.iter().filter(|(k, _)| ADDRESS.contains(k)).map(|(k, v)| (k, v.clone())));
                    member.ids.union(&parts)
                }
                _ => member.ids.clone(),
            };
            let consent = match kind {
                Kind::Ingest => {
                    ConsentJson::of(member.consent.ad_user_data.flatten(), member.consent.ad_personalization.flatten())
                }
                _ => None,
            };
            let country = default_country.as_ref().map(|c| (IdentifierKind::Country, Normalized::Plain(c.clone())));
            let with_default = ids.get(IdentifierKind::Country).is_none().then_some(country).flatten();
            let all = ids.iter().chain(with_default.as_ref().map(|(k, v)| (*k, v)));
            let (u, m) = wire::members(all, consent);
            if (u.is_some() || m.is_some())
                && let Some(flag) = sendable.get_mut(member.change)
            {
                *flag = true;
            }
            if let Some(u) = u {
                user.changes.push(member.change);
                user.members.push(u);
            }
            if let Some(m) = m {
                mobile.changes.push(member.change);
                mobile.members.push(m);
            }
        }
        let by_type = [(DataType::User, user), (DataType::Mobile, mobile)];
        (by_type.into_iter().filter(|(_, o)| !o.members.is_empty()).collect(), sendable)
    }

    /// Sends `outgoing` in requests of at most `max_members_per_request` members; a member
    /// Google names as invalid gets its change refused, and the request goes again without
    /// the refused changes' members.
    async fn send_all(
        &self,
        kind: Kind,
        data_type: DataType,
        outgoing: Outgoing,
        plan: &mut AudiencePlan,
        validate_only: bool,
    ) -> Result<(), DestinationError> {
        let max = self.config.max_members_per_request;
        let mut changes = outgoing.changes.into_iter();
        let mut members = outgoing.members.into_iter();
        loop {
            let chunk_changes: Vec<usize> = changes.by_ref().take(max).collect();
            let chunk_members: Vec<Member> = members.by_ref().take(max).collect();
            if chunk_changes.is_empty() {
                return Ok(());
            }
            self.send_chunk(kind, data_type, chunk_changes, chunk_members, plan, validate_only).await?;
        }
    }

    async fn send_chunk(
        &self,
        kind: Kind,
        data_type: DataType,
        mut changes: Vec<usize>,
        mut members: Vec<Member>,
        plan: &mut AudiencePlan,
        validate_only: bool,
    ) -> Result<(), DestinationError> {
        loop {
            // A change refused in an earlier request of the batch sends nothing more.
            let keep: Vec<bool> = changes.iter().map(|c| !plan.is_refused(*c)).collect();
            retain(&mut changes, &mut members, &keep);
            if members.is_empty() {
                return Ok(());
            }
            let sent = self.send(kind, data_type, &members, validate_only).await?;
            let error = match sent {
                Sent::Accepted(id) => {
                    // A checked request's status cannot be retrieved (INVALID_REQUEST_ID).
                    if let Some(id) = id.filter(|_| !validate_only) {
                        self.remember(id, kind);
                    }
                    return Ok(());
                }
                Sent::Refused(error) => error,
            };
            let mut named = 0;
            for violation in &error.field_violations {
                let Some(change) = violation.index_in("audience_members").and_then(|i| changes.get(i)) else {
                    continue;
                };
                let reason = violation.reason.as_deref().or(error.reason.as_deref()).unwrap_or("INVALID_ARGUMENT");
                let at = violation.path_within("audience_members").filter(|p| !p.is_empty()).unwrap_or("the member");
                plan.refuse(
                    *change,
                    format!("Google Data Manager refused the member ({}): {reason} at {at}", kind.as_str()),
                );
                named += 1;
            }
            if named == 0 {
                return Err(self.refusal(kind, &error));
            }
        }
    }

    /// One request of `members` of `data_type`.
    async fn send(
        &self,
        kind: Kind,
        data_type: DataType,
        members: &[Member],
        validate_only: bool,
    ) -> Result<Sent, DestinationError> {
        let destination = self.destination();
        let encoding = (data_type == DataType::User).then_some("HEX");
        match kind {
            Kind::Ingest => {
                let body = IngestRequest {
                    destinations: [&destination],
                    audience_members: members,
                    consent: ConsentJson::request(self.config.consent.as_ref()),
                    validate_only,
                    encoding,
                    terms_of_service: TermsOfService { customer_match_terms_of_service_status: "ACCEPTED" },
                };
                self.post(&self.urls.ingest, &body).await
            }
            _ => {
                let body =
                    RemoveRequest { destinations: [&destination], audience_members: members, validate_only, encoding };
                self.post(&self.urls.remove, &body).await
            }
        }
    }

    pub(super) async fn check_access(&self) -> Result<(), DestinationError> {
        let Some(Normalized::Hashed(digest)) = check_member() else {
            return Err(DestinationError::fatal(format!(
                "{}: the check's synthetic member could not be built; this is a bug in the connector",
                self.name
            )));
        };
        let destination = self.destination();
        let members = [Member {
            user_data: Some(wire::UserData {
                user_identifiers: vec![wire::UserIdentifier::EmailAddress(wire::hex(&digest))],
            }),
            mobile_data: None,
            consent: None,
        }];
        let body = IngestRequest {
            destinations: [&destination],
            audience_members: &members,
            consent: ConsentJson::request(self.config.consent.as_ref()),
            validate_only: true,
            encoding: Some("HEX"),
            terms_of_service: TermsOfService { customer_match_terms_of_service_status: "ACCEPTED" },
        };
        match self.post(&self.urls.ingest, &body).await? {
            Sent::Accepted(_) => Ok(()),
            Sent::Refused(error) => Err(match self.refusal(Kind::Ingest, &error) {
                DestinationError::InvalidBatch { message } => DestinationError::fatal(message),
                other => other,
            }),
        }
    }
}

/// Keeps the entries of `changes` and `members` whose `keep` is true.
fn retain(changes: &mut Vec<usize>, members: &mut Vec<Member>, keep: &[bool]) {
    let mut flags = keep.iter();
    changes.retain(|_| flags.next().copied().unwrap_or(false));
    let mut flags = keep.iter();
    members.retain(|_| flags.next().copied().unwrap_or(false));
}
