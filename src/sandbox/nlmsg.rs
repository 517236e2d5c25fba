//! Bare netlink framing for the two families no netlink crate of ours speaks (audit, and
//! sock_diag's SOCK_DESTROY): a request's header, and a datagram cut into its messages.

pub const HDRLEN: usize = 16;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;

/// One request: the header (length, type, NLM_F_REQUEST | `flags`, sequence 1, port 0 for
/// the kernel) and the payload.
pub fn request(kind: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(HDRLEN + payload.len());
    msg.extend_from_slice(&((HDRLEN + payload.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&(libc::NLM_F_REQUEST as u16 | flags).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(payload);
    msg
}

/// The netlink messages in one datagram: (type, payload). A length that does not fit ends
/// the list.
pub fn messages(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= HDRLEN {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if len < HDRLEN || len > buf.len() {
            break;
        }
        out.push((kind, &buf[HDRLEN..len]));
        buf = buf.get((len + 3) & !3..).unwrap_or(&[]);
    }
    out
}

/// The errno of an NLMSG_ERROR payload (0: an acknowledgement).
pub fn error_code(payload: &[u8]) -> i32 {
    payload
        .get(..4)
        .map_or(0, |c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_cut_back_into_messages_gives_its_type_and_payload() {
        let mut two = request(20, 0x300, &[1, 2, 3]);
        // Padded to four bytes, as the kernel aligns messages.
        two.push(0);
        two.extend(request(21, 4, &[9; 8]));
        let got = messages(&two);
        assert_eq!(got, vec![(20, &[1u8, 2, 3][..]), (21, &[9u8; 8][..])]);
        let flags = u16::from_ne_bytes([two[6], two[7]]);
        assert_eq!(flags, 0x301);
    }

    #[test]
    fn a_length_past_the_end_ends_the_list() {
        let mut m = request(2, 0, &(-17i32).to_ne_bytes());
        assert_eq!(error_code(messages(&m)[0].1), -17);
        m[0] = 200;
        assert!(messages(&m).is_empty());
    }
}
