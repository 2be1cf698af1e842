//! Byte tries for the lexicon: a word's classes in one walk down it, each step one probe
//! of a hash table of all edges, so a look-up costs the word's length whatever the
//! lexicon's size; most words are turned away before the first step by bitmaps of the
//! lexicon's first two and three bytes.

/// A byte trie whose nodes carry the classes of words ending there (`exact`) and of words
/// starting with the path to there (`prefix`). Each step is one probe of a hash table of
/// all edges, so a walk costs the word's length whatever the lexicon's size; most words
/// are turned away before the first step by a bitmap of the lexicon's first two bytes.
pub(crate) struct Trie {
    /// One bit per first two bytes of any word in the trie (the second is 0 for a word of
    /// one byte).
    pairs: Box<[u64]>,
    /// One bit per hash of the first three bytes of any word of three bytes or more: a
    /// longer word is in no list unless its bit is set (about one English word in fifty
    /// gets past this, against one in two past `pairs`). Unused when a prefix of one or
    /// two bytes is listed (`short_prefixes`).
    triples: Box<[u64]>,
    short_prefixes: bool,
    /// Per node: (exact, prefix) classes; node 0 is the root.
    nodes: Vec<(u32, u32)>,
    /// Open addressing, linear probing: (node << 8 | byte, child), `EDGE_EMPTY` keys free.
    /// Invariant: its length is a power of two, at least twice the number of edges.
    edges: Box<[(u32, u32)]>,
}

const EDGE_EMPTY: u32 = u32::MAX;

/// A node of a trie being built: its (byte, child) edges, its exact and prefix classes.
type BuilderNode = (Vec<(u8, u32)>, u32, u32);

/// A trie being built, edges per node.
#[derive(Default)]
pub(crate) struct TrieBuilder {
    nodes: Vec<BuilderNode>,
}

impl TrieBuilder {
    pub(crate) fn insert(&mut self, bytes: impl Iterator<Item = u8>, exact: u32, prefix: u32) {
        if self.nodes.is_empty() {
            self.nodes.push((Vec::new(), 0, 0));
        }
        let mut node_idx = 0;
        for byte in bytes {
            let found = self.nodes[node_idx]
                .0
                .iter()
                .find(|&&(edge_byte, _)| edge_byte == byte)
                .map(|&(_, child)| child as usize);
            node_idx = match found {
                Some(child) => child,
                None => {
                    let child = self.nodes.len();
                    self.nodes.push((Vec::new(), 0, 0));
                    let child_u32 = u32::try_from(child).expect("lexicon fits in u32 nodes");
                    self.nodes[node_idx].0.push((byte, child_u32));
                    child
                }
            };
        }
        self.nodes[node_idx].1 |= exact;
        self.nodes[node_idx].2 |= prefix;
    }

    pub(crate) fn build(self) -> Trie {
        let n_edges: usize = self.nodes.iter().map(|(edges, _, _)| edges.len()).sum();
        let mut trie = Trie {
            pairs: vec![0; 256 * 256 / 64].into_boxed_slice(),
            triples: vec![0; TRIPLE_BITS / 64].into_boxed_slice(),
            short_prefixes: false,
            nodes: self
                .nodes
                .iter()
                .map(|&(_, exact, prefix)| (exact, prefix))
                .collect(),
            edges: vec![(EDGE_EMPTY, 0); (2 * n_edges).next_power_of_two().max(2)]
                .into_boxed_slice(),
        };
        for (node_idx, (edges, _, _)) in self.nodes.iter().enumerate() {
            for &(byte, child) in edges {
                let key = edge_key(node_idx as u32, byte);
                let mut slot = trie.slot(key);
                while trie.edges[slot].0 != EDGE_EMPTY {
                    slot = (slot + 1) & (trie.edges.len() - 1);
                }
                trie.edges[slot] = (key, child);
            }
        }
        let Some((root_edges, _, _)) = self.nodes.first() else {
            return trie;
        };
        for &(first, child) in root_edges {
            let (child_edges, child_exact, child_prefix) = &self.nodes[child as usize];
            if *child_exact != 0 || *child_prefix != 0 {
                // A word of one byte, or a prefix of one: any second byte may follow.
                for second in 0..=u8::MAX {
                    trie.set_pair(first, second);
                }
            }
            trie.short_prefixes |= *child_prefix != 0;
            for &(second, grandchild) in child_edges {
                trie.set_pair(first, second);
                let (grandchild_edges, _, grandchild_prefix) = &self.nodes[grandchild as usize];
                trie.short_prefixes |= *grandchild_prefix != 0;
                for &(third, _) in grandchild_edges {
                    let bit = triple_bit(first, second, third);
                    trie.triples[bit / 64] |= 1 << (bit % 64);
                }
            }
        }
        trie
    }
}

/// Bits of `Trie::triples`.
const TRIPLE_BITS: usize = 1 << 16;

fn triple_bit(first: u8, second: u8, third: u8) -> usize {
    let key = u32::from(first) << 16 | u32::from(second) << 8 | u32::from(third);
    (key.wrapping_mul(0x9E37_79B1) >> 16) as usize
}

fn edge_key(node_idx: u32, byte: u8) -> u32 {
    node_idx << 8 | u32::from(byte)
}

impl Trie {
    fn set_pair(&mut self, first: u8, second: u8) {
        let bit = usize::from(first) << 8 | usize::from(second);
        self.pairs[bit / 64] |= 1 << (bit % 64);
    }

    fn has_pair(&self, first: u8, second: u8) -> bool {
        let bit = usize::from(first) << 8 | usize::from(second);
        self.pairs[bit / 64] & (1 << (bit % 64)) != 0
    }

    /// Fibonacci hashing: the product's high bits, which depend on all of the key's.
    fn slot(&self, key: u32) -> usize {
        let bits = self.edges.len().trailing_zeros();
        (key.wrapping_mul(0x9E37_79B1) >> (32 - bits)) as usize
    }

    /// The child of `node_idx` by `byte`; a few probes at most (the table is half empty).
    fn child(&self, node_idx: u32, byte: u8) -> Option<u32> {
        let key = edge_key(node_idx, byte);
        let mut slot = self.slot(key);
        loop {
            let (slot_key, child) = self.edges[slot];
            if slot_key == key {
                return Some(child);
            }
            if slot_key == EDGE_EMPTY {
                return None;
            }
            slot = (slot + 1) & (self.edges.len() - 1);
        }
    }

    /// Whether a word starting with `first`, `second` (0 for a word of one byte) and
    /// `third` (None for a word of two bytes or less) may have classes in this trie.
    fn may_start(&self, first: u8, second: u8, third: Option<u8>) -> bool {
        if !self.has_pair(first, second) {
            return false;
        }
        match third {
            Some(third) if !self.short_prefixes => {
                let bit = triple_bit(first, second, third);
                self.triples[bit / 64] & (1 << (bit % 64)) != 0
            }
            _ => true,
        }
    }

    /// The `exact` classes of the node the whole input leads to (0 if it falls off the
    /// trie) and the union of `prefix` classes along the way.
    pub(crate) fn walk(&self, mut bytes: impl Iterator<Item = u8> + Clone) -> (u32, u32) {
        let mut peek = bytes.clone();
        let Some(first) = peek.next() else {
            return (0, 0);
        };
        let second = peek.next().unwrap_or(0);
        if !self.may_start(first, second, peek.next()) {
            return (0, 0);
        }
        let mut node_idx = 0;
        let mut prefix = 0;
        for byte in bytes.by_ref() {
            match self.child(node_idx, byte) {
                Some(child) => {
                    node_idx = child;
                    prefix |= self.nodes[child as usize].1;
                }
                None => return (0, prefix),
            }
        }
        (self.nodes[node_idx as usize].0, prefix)
    }
}
