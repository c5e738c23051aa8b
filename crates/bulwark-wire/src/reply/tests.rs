use super::*;

fn one(bytes: &[u8]) -> Reply {
    let mut b = ReplyBuffer::default();
    b.push(bytes);
    let r = b.next_reply().unwrap().unwrap();
    assert!(!b.has_pending());
    r
}

fn e(s: &str) -> Enhanced {
    s.parse().unwrap()
}

#[test]
fn single_and_multi_line_replies() {
    let r = one(b"250 2.1.0 Sender ok\r\n");
    assert_eq!(r.code.get(), 250);
    assert_eq!(r.enhanced, Some(e("2.1.0")));
    assert_eq!(r.text(), "Sender ok");
    assert_eq!(r.status(), e("2.1.0"));
    assert_eq!(r.one_line(), "250 2.1.0 Sender ok");

    let r = one(b"550-5.1.1 No such\r\n550 5.1.1 user here\r\n");
    assert_eq!(r.code.get(), 550);
    assert!(r.is_permanent());
    assert_eq!(r.status(), e("5.1.1"));
    assert_eq!(r.text(), "No such user here");
    assert_eq!(r.lines, ["5.1.1 No such", "5.1.1 user here"]);

    let r = one(b"451 try later\r\n");
    assert_eq!(r.enhanced, None);
    assert_eq!(r.status(), e("4.0.0"));
    assert!(r.is_transient());

    let r = one(b"354\r\n");
    assert!(r.is_intermediate());
    assert_eq!(r.text(), "");
    assert_eq!(r.one_line(), "354");
    // A nonsense enhanced code of another class is not believed.
    assert_eq!(one(b"550 2.0.0 odd\r\n").status(), e("5.0.0"));
    assert_eq!(one(b"550 2.0.0 odd\r\n").one_line(), "550 2.0.0 odd");
    // Something that only looks like one stays text.
    let r = one(b"550 3.0.0 odd\r\n");
    assert_eq!((r.enhanced, r.one_line().as_str()), (None, "550 3.0.0 odd"));
    assert_eq!(one(b"250 2.1.0x\r\n").text(), "2.1.0x");
    // An enhanced code with nothing after it, and bare LF line ends.
    let r = one(b"250-2.0.0\n250 2.0.0 done\n");
    assert_eq!((r.enhanced, r.text().as_str()), (Some(e("2.0.0")), "done"));
}

#[test]
fn replies_arrive_in_pieces_and_back_to_back() {
    let mut b = ReplyBuffer::default();
    b.push(b"250-first\r\n250 sec");
    assert_eq!(b.next_reply().unwrap(), None);
    b.push(b"ond\r\n221 bye\r\n");
    assert_eq!(b.next_reply().unwrap().unwrap().text(), "first second");
    assert!(b.has_pending());
    assert_eq!(b.next_reply().unwrap().unwrap().code.get(), 221);
    assert_eq!(b.next_reply().unwrap(), None);
}

#[test]
fn too_long_and_too_many_lines() {
    let mut b = ReplyBuffer::default();
    b.push(&vec![b'2'; MAX_REPLY + 10]);
    assert_eq!(b.next_reply(), Err(ReplyError::TooLong));
    // A long reply in long lines.
    let mut b = ReplyBuffer::default();
    for _ in 0..50 {
        b.push(format!("250-{}\r\n", "x".repeat(100)).as_bytes());
    }
    assert_eq!(b.next_reply(), Err(ReplyError::TooLong));
    // Many short lines, under the octet bound.
    let mut b = ReplyBuffer::default();
    for _ in 0..=MAX_LINES {
        b.push(b"250-\r\n");
    }
    const { assert!((MAX_LINES + 1) * 6 <= MAX_REPLY) };
    assert_eq!(b.next_reply(), Err(ReplyError::TooManyLines));
    // Exactly at the bound is fine.
    let mut b = ReplyBuffer::default();
    for _ in 1..MAX_LINES {
        b.push(b"250-\r\n");
    }
    b.push(b"250 \r\n");
    assert_eq!(b.next_reply().unwrap().unwrap().lines.len(), MAX_LINES);
}

#[test]
fn garbage_codes_and_lines_are_errors() {
    for bad in [
        &b"hello there\r\n"[..],
        b"25\r\n",
        b"2500 x\r\n",
        b"250_x\r\n",
        b"600 beyond\r\n",
        b"199 early\r\n",
        b"099 zero\r\n",
    ] {
        let mut b = ReplyBuffer::default();
        b.push(bad);
        assert!(
            matches!(b.next_reply(), Err(ReplyError::Malformed(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // Control characters never reach a log.
    assert_eq!(one(b"250 ok\x1b[31m\r\n").text(), "ok?[31m");
}

#[test]
fn lines_of_one_reply_carry_one_code() {
    let mut b = ReplyBuffer::default();
    b.push(b"250-first\r\n550 second\r\n");
    assert!(matches!(b.next_reply(), Err(ReplyError::Malformed(_))));
    assert!(parse(b"250-a\r\n251 b\r\n").is_err());
    assert!(parse(b"250 a\r\n250 b\r\n").is_err());
    assert!(parse(b"250-a\r\n").is_err());
    assert!(parse(b"").is_err());
    assert_eq!(parse(b"250-a\r\n250 b\r\n").map(|r| r.lines.len()), Ok(2));
}

#[test]
fn codes_and_classes() {
    assert_eq!(ReplyCode::new(250).class(), Class::Positive);
    assert_eq!(ReplyCode::new(354).class(), Class::Intermediate);
    assert_eq!(ReplyCode::new(421).class(), Class::Transient);
    assert_eq!(ReplyCode::new(599).class(), Class::Permanent);
    assert_eq!(ReplyCode::checked(199), None);
    assert_eq!(ReplyCode::checked(600), None);
    assert_eq!(ReplyCode::new(221).to_string(), "221");
    assert_eq!(one(b"354 go\r\n").status(), e("4.0.0"));
    assert_eq!(one(b"250 ok\r\n").status(), e("2.0.0"));
}

#[test]
fn writes_single_and_multi_line_replies() {
    let mut out = Vec::new();
    write_reply(&mut out, 250, Some(e("2.0.0")), &["OK"]);
    assert_eq!(out, b"250 2.0.0 OK\r\n");
    let mut out = Vec::new();
    write_reply(
        &mut out,
        250,
        None,
        &["mail.example.test", "PIPELINING", "SIZE 10"],
    );
    assert_eq!(
        out,
        b"250-mail.example.test\r\n250-PIPELINING\r\n250 SIZE 10\r\n".to_vec()
    );
    let mut out = Vec::new();
    write_reply(
        &mut out,
        550,
        Some(e("5.7.1")),
        &["DMARC (RFC 7489 \u{a7}6.6.1) \u{2014} caf\u{e9}\r\n250 fake"],
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "550 5.7.1 DMARC (RFC 7489 section 6.6.1) - caf?  250 fake\r\n"
    );
}

#[test]
fn a_parsed_reply_writes_back_as_read() {
    let raw = b"250-mx.example.test\r\n250-2.0.0 PIPELINING\r\n250 SIZE 10\r\n";
    let r = parse(raw).unwrap();
    let mut out = Vec::new();
    r.write_to(&mut out);
    assert_eq!(out, raw.to_vec());
}
