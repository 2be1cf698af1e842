//! Partitions of the address space, for running several Mayfly nodes behind Postfix (mail)
//! and HAProxy (reads): docs/scale-out.md.
//!
//! The rule has to be computed the same way by three programs that share no code: Mayfly,
//! a Postfix `pcre:` transport table and an HAProxy map. Neither table can hash, but both
//! can look at the first character of the local part; so that is the rule: an inbox's
//! partition is the first byte of its key (`InboxKey`, lowercase ASCII for every generated
//! address): `0`-`9` and `a`-`z` are 36 partitions, anything else (a quoted local part,
//! punctuation, a non-ASCII letter) is the 37th, `other`. Generated addresses are uniformly
//! random in `[a-z0-9]`, so they spread evenly, and a node generates addresses only in
//! the partitions it owns; addresses people choose skew (there are more `t` than `q`).
//!
//! A partition map (a text file, the one source of truth) says which node owns which
//! partitions; `mayfly partition-map` turns it into the Postfix transport table and the
//! HAProxy configuration, and each node is started with `--owned-partitions` from it.

use std::fmt;

use crate::address::InboxKey;

/// Partitions: `0`-`9`, `a`-`z`, and `other`.
pub const N_PARTITIONS: usize = 37;
/// Nodes one map may list.
pub const NODES_MAX: usize = 64;
/// A partition map larger than this is not one.
pub const MAP_BYTES_MAX: usize = 64 * 1024;
/// The alphanumeric partitions, in order; `other` comes after them.
const ALPHANUMERIC: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// One partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition(u8);

impl Partition {
    /// The catch-all partition of keys that do not start with `[0-9a-z]`.
    pub const OTHER: Partition = Partition(36);

    /// The partition of an inbox.
    pub fn of(key: &InboxKey<'_>) -> Partition {
        Partition::of_first_byte(key.as_str().as_bytes().first().copied())
    }

    /// The partition of a key starting with `byte` (lowercase, as keys are).
    pub fn of_first_byte(byte: Option<u8>) -> Partition {
        match byte {
            Some(byte @ b'0'..=b'9') => Partition(byte - b'0'),
            Some(byte @ b'a'..=b'z') => Partition(10 + byte - b'a'),
            _ => Partition::OTHER,
        }
    }

    /// The character that starts the keys of this partition; `None` for `other`.
    pub fn first_char(self) -> Option<char> {
        ALPHANUMERIC
            .get(usize::from(self.0))
            .map(|&b| char::from(b))
    }

    fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.first_char() {
            Some(c) => write!(f, "{c}"),
            None => f.write_str("other"),
        }
    }
}

/// A set of partitions (`--owned-partitions`, and each node's line of a map).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionSet(u64);

impl PartitionSet {
    /// Every partition: a node that runs alone.
    pub const ALL: PartitionSet = PartitionSet((1 << N_PARTITIONS) - 1);
    pub const EMPTY: PartitionSet = PartitionSet(0);

    pub fn contains(self, partition: Partition) -> bool {
        self.0 & (1 << partition.index()) != 0
    }

    pub fn is_all(self) -> bool {
        self == PartitionSet::ALL
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn intersects(self, other: PartitionSet) -> bool {
        self.0 & other.0 != 0
    }

    pub fn union(self, other: PartitionSet) -> PartitionSet {
        PartitionSet(self.0 | other.0)
    }

    fn insert(&mut self, partition: Partition) {
        self.0 |= 1 << partition.index();
    }

    /// The partitions in order (`0`-`9`, `a`-`z`, `other`).
    pub fn iter(self) -> impl Iterator<Item = Partition> {
        (0..N_PARTITIONS as u8)
            .map(Partition)
            .filter(move |&partition| self.contains(partition))
    }

    /// The first characters of the alphanumeric partitions in the set, in order: what a
    /// generated address may start with.
    pub fn first_chars(self) -> Vec<u8> {
        self.iter()
            .filter_map(|partition| partition.first_char())
            .map(|c| c as u8)
            .collect()
    }

    /// Parses `0-9,a-h,other` (items separated by commas or spaces; a range is two
    /// characters of the same kind in order; `all` is every partition).
    ///
    /// # Errors
    /// An item that is none of these, or an empty list.
    pub fn parse(text: &str) -> Result<PartitionSet, String> {
        let mut set = PartitionSet::EMPTY;
        for item in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|item| !item.is_empty())
        {
            set = set.union(parse_item(&item.to_ascii_lowercase())?);
        }
        if set.is_empty() {
            return Err("no partition given (write e.g. 0-9,a-h or other or all)".to_string());
        }
        Ok(set)
    }
}

fn parse_item(item: &str) -> Result<PartitionSet, String> {
    let bad = || {
        format!(
            "{item:?} is not a partition: write a character of [0-9a-z], a range such as a-h, \
             other, or all"
        )
    };
    match item {
        "all" => return Ok(PartitionSet::ALL),
        "other" => return Ok(PartitionSet(1 << Partition::OTHER.index())),
        _ => {}
    }
    let bytes = item.as_bytes();
    let (first, last) = match bytes {
        [one] => (*one, *one),
        [first, b'-', last] => (*first, *last),
        _ => return Err(bad()),
    };
    let (start, end) = (
        Partition::of_first_byte(Some(first)),
        Partition::of_first_byte(Some(last)),
    );
    let same_kind = first.is_ascii_digit() == last.is_ascii_digit();
    if start == Partition::OTHER || end == Partition::OTHER || !same_kind || start > end {
        return Err(bad());
    }
    let mut set = PartitionSet::EMPTY;
    for index in start.0..=end.0 {
        set.insert(Partition(index));
    }
    Ok(set)
}

impl fmt::Display for PartitionSet {
    /// The shortest form `parse` reads back: ranges of consecutive partitions.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            return f.write_str("all");
        }
        let mut items: Vec<String> = Vec::new();
        let partitions: Vec<Partition> = self.iter().collect();
        let mut idx = 0;
        while idx < partitions.len() {
            let start = partitions[idx];
            let mut end = start;
            while idx + 1 < partitions.len()
                && partitions[idx + 1].0 == end.0 + 1
                && partitions[idx + 1] != Partition::OTHER
                && (partitions[idx + 1].0 < 10) == (start.0 < 10)
            {
                idx += 1;
                end = partitions[idx];
            }
            items.push(if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            });
            idx += 1;
        }
        f.write_str(&items.join(","))
    }
}

/// One node of a partition map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// A name for logs and HAProxy (`[a-z0-9_-]`).
    pub name: String,
    /// Where Postfix relays its mail: `HOST:PORT`.
    pub smtp: String,
    /// Where HAProxy sends its reads: `HOST:PORT`.
    pub http: String,
    pub owned: PartitionSet,
}

/// The partition map: which node owns which partitions. Every partition is owned by
/// exactly one node.
///
/// The file has one line per node, `#` comments and blank lines aside:
///
/// ```text
/// # node   smtp              http              partitions
/// n1       10.77.0.11:2525   10.77.0.11:8025   0-9,a-h
/// n2       10.77.0.12:2525   10.77.0.12:8025   i-r
/// n3       10.77.0.13:2525   10.77.0.13:8025   s-z,other
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMap {
    pub nodes: Vec<Node>,
}

impl PartitionMap {
    /// Parses and checks a map.
    ///
    /// # Errors
    /// A malformed line (named by number), a duplicate node, a partition owned twice or by
    /// nobody, too many nodes, or a map over `MAP_BYTES_MAX`.
    pub fn parse(text: &str) -> Result<PartitionMap, String> {
        if text.len() > MAP_BYTES_MAX {
            return Err(format!("a partition map is at most {MAP_BYTES_MAX} bytes"));
        }
        let mut nodes: Vec<Node> = Vec::new();
        let mut owned = PartitionSet::EMPTY;
        for (line_idx, line) in text.lines().enumerate() {
            let line_number = line_idx + 1;
            let content = line.split('#').next().unwrap_or_default().trim();
            if content.is_empty() {
                continue;
            }
            let fields: Vec<&str> = content.split_whitespace().collect();
            let [name, smtp, http, partitions @ ..] = fields.as_slice() else {
                return Err(format!(
                    "line {line_number}: expected NAME SMTP_HOST:PORT HTTP_HOST:PORT PARTITIONS"
                ));
            };
            if partitions.is_empty() {
                return Err(format!("line {line_number}: no partitions"));
            }
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!(
                    "line {line_number}: node name {name:?}: use letters, digits, - and _"
                ));
            }
            for (what, addr) in [("SMTP", smtp), ("HTTP", http)] {
                if !is_host_port(addr) {
                    return Err(format!(
                        "line {line_number}: {what} address {addr:?} is not HOST:PORT"
                    ));
                }
            }
            if nodes.iter().any(|node| node.name == *name) {
                return Err(format!("line {line_number}: node {name} is listed twice"));
            }
            let set = PartitionSet::parse(&partitions.join(","))
                .map_err(|why| format!("line {line_number}: {why}"))?;
            if set.intersects(owned) {
                let twice: Vec<String> = set
                    .iter()
                    .filter(|&partition| owned.contains(partition))
                    .map(|partition| partition.to_string())
                    .collect();
                return Err(format!(
                    "line {line_number}: partitions {} are owned by another node too",
                    twice.join(",")
                ));
            }
            owned = owned.union(set);
            nodes.push(Node {
                name: (*name).to_string(),
                smtp: (*smtp).to_string(),
                http: (*http).to_string(),
                owned: set,
            });
            if nodes.len() > NODES_MAX {
                return Err(format!("at most {NODES_MAX} nodes"));
            }
        }
        if !owned.is_all() {
            let orphans: Vec<String> = PartitionSet(PartitionSet::ALL.0 & !owned.0)
                .iter()
                .map(|partition| partition.to_string())
                .collect();
            return Err(format!("no node owns partitions {}", orphans.join(",")));
        }
        Ok(PartitionMap { nodes })
    }

    /// The node owning `partition` (every partition has one).
    pub fn owner(&self, partition: Partition) -> &Node {
        self.nodes
            .iter()
            .find(|node| node.owned.contains(partition))
            .expect("a checked map owns every partition")
    }

    /// Postfix's transport table (`transport_maps = pcre:/etc/postfix/mayfly_transport`):
    /// each recipient to its node's SMTP listener. Postfix folds the address to lowercase
    /// before the lookup; the last line catches `other`.
    pub fn postfix_transport(&self) -> String {
        let mut out = String::from(
            "# Generated by `mayfly partition-map`: each recipient to the Mayfly node owning\n\
             # its partition (the first character of the local part). Do not edit.\n",
        );
        for node in &self.nodes {
            let chars = node.owned.first_chars();
            if !chars.is_empty() {
                out.push_str(&format!(
                    "/^[{}]/ smtp:[{}]:{}\n",
                    String::from_utf8_lossy(&chars),
                    host_of(&node.smtp),
                    port_of(&node.smtp)
                ));
            }
        }
        let other = self.owner(Partition::OTHER);
        out.push_str(&format!(
            "/^/ smtp:[{}]:{}\n",
            host_of(&other.smtp),
            port_of(&other.smtp)
        ));
        out
    }

    /// HAProxy's map from a partition's first character to its node's backend
    /// (`mayfly_<name>`); keys not in it are `other`'s, the `use_backend` default.
    pub fn haproxy_map(&self) -> String {
        let mut out = String::from("# Generated by `mayfly partition-map`. Do not edit.\n");
        for partition in PartitionSet::ALL.iter() {
            if let Some(c) = partition.first_char() {
                out.push_str(&format!("{c} mayfly_{}\n", self.owner(partition).name));
            }
        }
        out
    }

    /// A whole HAProxy configuration: a frontend on `listen` that sends each inbox request
    /// (WebSocket included) to the owning node by the map at `map_path`, everything else
    /// (`POST /api/v1/addresses`, the page) round-robin to every node, which generate
    /// addresses in their own partitions; a backend per node with health checks.
    pub fn haproxy_config(&self, listen: &str, map_path: &str) -> String {
        let other = &self.owner(Partition::OTHER).name;
        let mut out = format!(
            "# Generated by `mayfly partition-map`. Reads go to the node owning the inbox.\n\
             global\n    maxconn 4096\n\n\
             defaults\n    mode http\n    timeout connect 5s\n    timeout client 120s\n\
             \x20   timeout server 120s\n    timeout tunnel 1h\n    option http-server-close\n\n\
             frontend mayfly\n    bind {listen}\n\
             \x20   # The inbox's partition: the first character of the address in the path,\n\
             \x20   # percent-decoded and lowercased as Mayfly folds it.\n\
             \x20   acl inbox_path path_beg /api/v1/inboxes/\n\
             \x20   http-request set-var(txn.partition) path,url_dec,lower,field(5,/),bytes(0,1) if inbox_path\n\
             \x20   use_backend %[var(txn.partition),map({map_path},mayfly_{other})] if inbox_path\n\
             \x20   default_backend mayfly_all\n\n"
        );
        for node in &self.nodes {
            out.push_str(&format!(
                "backend mayfly_{name}\n    option httpchk GET /healthz\n    server {name} {http} check inter 1s fall 2 rise 1\n\n",
                name = node.name,
                http = node.http
            ));
        }
        out.push_str(
            "backend mayfly_all\n    balance roundrobin\n    option httpchk GET /healthz\n",
        );
        for node in &self.nodes {
            out.push_str(&format!(
                "    server {} {} check inter 1s fall 2 rise 1\n",
                node.name, node.http
            ));
        }
        out
    }
}

fn is_host_port(text: &str) -> bool {
    match text.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && port.parse::<u16>().is_ok_and(|port| port != 0)
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
        }
        None => false,
    }
}

fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn port_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or("25", |(_, port)| port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(address: &str) -> InboxKey<'_> {
        InboxKey::new(address).unwrap()
    }

    const MAP: &str = "# test map\n\
        n1 10.77.0.11:2525 10.77.0.11:8025 0-9 a-h\n\
        n2 10.77.0.12:2525 10.77.0.12:8025 i-r   # comment\n\
        \n\
        n3 10.77.0.13:2525 10.77.0.13:8025 s-z,other\n";

    #[test]
    fn keys_fall_in_their_first_characters_partition() {
        assert_eq!(Partition::of(&key("Alice@x.test")).to_string(), "a");
        assert_eq!(Partition::of(&key("7up@x.test")).to_string(), "7");
        assert_eq!(Partition::of(&key("zed@x.test")).to_string(), "z");
        for other in [
            "\"a b\"@x.test",
            "_x@x.test",
            "älice@x.test",
            "+tag@x.test",
            "",
        ] {
            assert_eq!(Partition::of(&key(other)), Partition::OTHER, "{other}");
        }
    }

    #[test]
    fn sets_parse_and_print_back() {
        for (text, shown) in [
            ("0-9,a-h", "0-9,a-h"),
            ("a b c", "a-c"),
            ("s-z, other", "s-z,other"),
            ("9,a", "9,a"),
            ("all", "all"),
            ("0-9,a-z,other", "all"),
            ("A-C", "a-c"),
        ] {
            let set = PartitionSet::parse(text).unwrap();
            assert_eq!(set.to_string(), shown, "{text}");
            assert_eq!(PartitionSet::parse(shown).unwrap(), set);
        }
        for bad in ["", "a-", "9-a", "z-a", "aa", "other-z", "é", "0-z", ","] {
            assert!(PartitionSet::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(PartitionSet::parse("x-z").unwrap().first_chars(), b"xyz");
    }

    #[test]
    fn maps_own_every_partition_once() {
        let map = PartitionMap::parse(MAP).unwrap();
        assert_eq!(map.nodes.len(), 3);
        assert_eq!(map.owner(Partition::of(&key("bob@x.test"))).name, "n1");
        assert_eq!(map.owner(Partition::OTHER).name, "n3");
        let missing = MAP.replace("s-z,other", "s-z");
        assert_eq!(
            PartitionMap::parse(&missing).unwrap_err(),
            "no node owns partitions other"
        );
        let twice = MAP.replace("i-r", "h-r");
        assert!(
            PartitionMap::parse(&twice)
                .unwrap_err()
                .contains("partitions h are owned by another node too")
        );
        assert!(
            PartitionMap::parse("n1 host 10.0.0.1:80 all")
                .unwrap_err()
                .contains("line 1")
        );
        assert!(PartitionMap::parse("n1 a:25 b:80 all\nn1 a:25 b:80 other").is_err());
    }

    #[test]
    fn generated_tables_route_every_partition_to_its_owner() {
        let map = PartitionMap::parse(MAP).unwrap();
        let transport = map.postfix_transport();
        assert!(
            transport.contains("/^[0123456789abcdefgh]/ smtp:[10.77.0.11]:2525\n"),
            "{transport}"
        );
        assert!(transport.contains("/^[ijklmnopqr]/ smtp:[10.77.0.12]:2525\n"));
        assert!(
            transport
                .ends_with("/^[stuvwxyz]/ smtp:[10.77.0.13]:2525\n/^/ smtp:[10.77.0.13]:2525\n")
        );
        let haproxy_map = map.haproxy_map();
        assert_eq!(
            haproxy_map.lines().filter(|l| !l.starts_with('#')).count(),
            36
        );
        assert!(haproxy_map.contains("\nh mayfly_n1\ni mayfly_n2\n"));
        let config = map.haproxy_config("10.77.0.3:80", "/etc/haproxy/mayfly.map");
        assert!(
            config.contains("map(/etc/haproxy/mayfly.map,mayfly_n3)"),
            "{config}"
        );
        assert!(config.contains("server n2 10.77.0.12:8025 check"));
    }
}
