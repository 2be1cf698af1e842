//! A metered dry run of the parse ammonia is about to do, stopped as soon as the input costs
//! more than its size allows.
//!
//! html5ever's parser and ammonia's cleaning are linear on ordinary HTML but not on every
//! input. Measured with html5ever 0.40.1 and ammonia 4.2.5 (whole `sanitize_html` before
//! this module existed; the serializer plays no part in these):
//! - `<div>` repeated (nested): 100 KB 1.3 s, 200 KB 6.8 s. Every `<div>` or `<p>` start
//!   tag walks the stack of open elements looking for a `<p>` in button scope
//!   (`TreeBuilder::in_scope_named`); `<ul>`, `<li>`, end tags and others walk it too;
//! - `<table>` then `<br>`s: each is foster-parented before the table, and ammonia's
//!   `RcDom::append_before_sibling` finds the table among its parent's children by a linear
//!   search: 50 KB 57 ms, 100 KB 225 ms;
//! - `<html a1>`, `<html a2>`, ...: each merges its attributes into the root element,
//!   building a set of all its attributes so far (`add_attrs_if_missing`): 100 KB 2.4 s,
//!   400 KB 26 s;
//! - `<div>`s, 200 formatting elements with distinct attributes, then `</div>x` repeated:
//!   every `x` reconstructs the 200 formatting elements (the HTML spec's "reconstruct the
//!   active formatting elements"): 100 KB becomes 1.7 million elements and 11.7 MB of
//!   output in 2.7 s; it is quadratic in time and memory;
//! - `<span>`s nested deep, then `<select>` and many `<selectedcontent>`: ammonia's
//!   `clean_dom` walks the ancestors of each one (`is_within`): 100 KB 116 ms, 400 KB 3.1 s;
//! - one tag with many distinct attribute names: the tokenizer compares each new name with
//!   all earlier ones (`Tokenizer::finish_attribute`): 100 KB 80 ms, 400 KB 2.6 s.
//!
//! None of this can be fixed from outside without writing a parser, so the parse is run
//! first with ammonia's own tree sink (the tree builder then takes exactly the decisions it
//! will take in ammonia's parse) wrapped in a meter, fed 4 KiB at a time, and given up when
//! one of three budgets, each proportional to the input size, is spent:
//! - steps: one per tree-sink call (every element a scope walk visits is one `elem_name`
//!   call), plus the searches `RcDom` does inside a call (children before an insertion point,
//!   attributes already on a merged element), the attribute bytes ammonia's cleaning will
//!   read, and per `<selectedcontent>` every element created so far (more than the
//!   ancestors ammonia's cleaning will walk);
//! - memory: an estimate of the DOM `RcDom` builds (elements, attributes, text and other
//!   nodes, the parse errors it keeps);
//! - CPU time of this thread, for what the tree sink cannot see (the tokenizer's attribute
//!   comparisons). It is a backstop: ordinary mail uses under a tenth of it, so whether
//!   such mail is sanitized does not depend on the machine's load.
//!
//! Steps and memory are deterministic; the tests assert them. The dry run costs one extra
//! parse (~40% of a whole sanitize of ordinary mail; cleaning and serializing are not
//! repeated); ammonia's parse that follows takes the same path, so its cost is bounded by the
//! same budgets.

use std::borrow::Cow;
use std::cell::Cell;
use std::rc::Weak;

use ammonia::rcdom::{Handle, NodeData, RcDom};
use html5ever::interface::{ElementFlags, NodeOrText, QuirksMode, TreeSink};
use html5ever::tendril::{StrTendril, TendrilSink};
use html5ever::{Attribute, ExpandedName, ParseOpts, QualName, local_name, ns};

use crate::mail::sanitize::Resource;

/// Bytes fed to the parser between two looks at the meter. After a budget is exceeded the
/// parser still finishes the chunk in hand; 4 KiB is ammonia's own read size.
const CHUNK_BYTES: usize = 4096;

/// Tree-sink steps allowed per input byte. Ordinary mail HTML and large web pages take
/// 0.35–0.75, text full of `&` or `<` 3, unclosed `<b><i><p>x` soup 9; every quadratic
/// shape in the list above passes 100 within the first 50 KB. A step costs 0.4–5 ns.
const STEPS_PER_BYTE_MAX: u64 = 32;
/// Steps charged per attribute already on an element that gets more merged in: `RcDom`
/// clones each name into a hash set (~20 ns, where an ordinary step is ~2 ns).
const MERGED_ATTRIBUTE_STEPS: usize = 16;
/// Steps any input may take, so that tiny inputs with some nesting are never refused.
const STEPS_BASE_MAX: u64 = 1 << 20;
/// Estimated bytes of DOM (ammonia's `RcDom`: nodes, attributes, the parse errors it keeps)
/// allowed per input byte. Ordinary mail and web pages take 4–12; text of `<` 25 (a parse
/// error per byte), `<span>`s nested 43, `<p>` repeated 85, `<a>x` repeated 110, unclosed
/// `<b><i><p>x` soup 250, 200 reconstructed formatting elements 5,000. The measured peak
/// memory of a whole sanitize run is 1.1–3x this estimate, plus input and output.
const DOM_BYTES_PER_BYTE_MAX: u64 = 64;
/// DOM bytes any input may build (4 MiB).
const DOM_BYTES_BASE_MAX: u64 = 4 << 20;
/// Estimated `RcDom` bytes of an element (`Rc<Node>` with its name, attribute vector,
/// children vector and template slot, its place in its parent's children and the parser's
/// stack).
const ELEMENT_BYTES: usize = 256;
/// Of an attribute (name and value handle, place in its element's vector); its value's
/// bytes are counted on top.
const ATTRIBUTE_BYTES: usize = 64;
/// Of a text, comment, doctype or processing-instruction node; text appended to a text
/// node costs only its bytes.
const NODE_BYTES: usize = 160;
/// Of a parse error message kept by `RcDom` (a `Cow<'static, str>`).
const PARSE_ERROR_BYTES: usize = 24;
/// CPU nanoseconds of parsing allowed per input byte (the dry run alone, optimized build).
/// On the development machine ordinary mail and web pages take 12–30, text of `&` 60–70,
/// of `<` 80–100, unclosed `<b><i><p>x` soup 240–340; one tag with 7,000 attributes
/// already 225, and it grows with the number of attributes.
const CPU_NS_PER_BYTE_MAX: u64 = 500;
/// CPU time any input may take (ns), so that small inputs never depend on the clock.
const CPU_NS_BASE_MAX: u64 = 20_000_000;
/// Unoptimized code (tests, debug builds) parses 5–20x slower; its CPU budget is scaled so
/// that it refuses the same inputs.
const CPU_DEBUG_BUILD_FACTOR: u64 = if cfg!(debug_assertions) { 25 } else { 1 };

/// What an input may cost.
#[derive(Clone, Copy, Debug)]
pub(super) struct Budget {
    pub(super) steps_max: u64,
    pub(super) dom_bytes_max: u64,
    pub(super) cpu_ns_max: u64,
}

impl Budget {
    /// The budget of an input of `html_bytes` bytes.
    pub(super) fn for_input(html_bytes: usize) -> Budget {
        let html_bytes = html_bytes as u64;
        Budget {
            steps_max: STEPS_BASE_MAX + STEPS_PER_BYTE_MAX * html_bytes,
            dom_bytes_max: DOM_BYTES_BASE_MAX + DOM_BYTES_PER_BYTE_MAX * html_bytes,
            cpu_ns_max: (CPU_NS_BASE_MAX + CPU_NS_PER_BYTE_MAX * html_bytes)
                * CPU_DEBUG_BUILD_FACTOR,
        }
    }
}

/// What a whole dry run used.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Usage {
    pub(super) steps: u64,
    pub(super) dom_bytes: u64,
    pub(super) cpu_ns: u64,
}

/// A dry run that gave up: the budget it ran out of and what it had used by then.
#[derive(Clone, Copy, Debug)]
pub(super) struct Exceeded {
    pub(super) resource: Resource,
    pub(super) usage: Usage,
}

/// Parses `html` as ammonia will (a fragment in a `<div>`, scripting on) and throws the tree
/// away; stops at the first look at the meter after a budget ran out.
pub(super) fn dry_run(html: &str, budget: &Budget) -> Result<Usage, Exceeded> {
    let meter = Meter {
        steps: Cell::new(0),
        dom_bytes: Cell::new(0),
        elements: Cell::new(0),
        cpu_start_ns: thread_cpu_ns(),
    };
    let sink = MeteredSink {
        dom: RcDom::default(),
        meter: &meter,
    };
    let mut parser = html5ever::parse_fragment(
        sink,
        ParseOpts::default(),
        QualName::new(None, ns!(html), local_name!("div")),
        Vec::new(),
        false,
    );
    let mut chunk_start = 0;
    while chunk_start < html.len() {
        let mut chunk_end = (chunk_start + CHUNK_BYTES).min(html.len());
        // A char is at most 4 bytes and a chunk at least 4, so this stays past the start.
        while !html.is_char_boundary(chunk_end) {
            chunk_end -= 1;
        }
        parser.process(StrTendril::from_slice(&html[chunk_start..chunk_end]));
        meter.check(budget)?;
        chunk_start = chunk_end;
    }
    parser.finish();
    meter.check(budget)
}

struct Meter {
    steps: Cell<u64>,
    dom_bytes: Cell<u64>,
    /// Elements created so far: more than any element's ancestors.
    elements: Cell<u64>,
    cpu_start_ns: u64,
}

impl Meter {
    fn step(&self, steps: usize) {
        self.steps
            .set(self.steps.get().saturating_add(steps as u64));
    }

    fn memory(&self, dom_bytes: usize) {
        self.dom_bytes
            .set(self.dom_bytes.get().saturating_add(dom_bytes as u64));
    }

    fn check(&self, budget: &Budget) -> Result<Usage, Exceeded> {
        let usage = Usage {
            steps: self.steps.get(),
            dom_bytes: self.dom_bytes.get(),
            cpu_ns: thread_cpu_ns().saturating_sub(self.cpu_start_ns),
        };
        let resource = if usage.steps > budget.steps_max {
            Resource::Steps
        } else if usage.dom_bytes > budget.dom_bytes_max {
            Resource::Memory
        } else if usage.cpu_ns > budget.cpu_ns_max {
            Resource::CpuTime
        } else {
            return Ok(usage);
        };
        Err(Exceeded { resource, usage })
    }
}

/// CPU time this thread has used (ns); 0 if the clock cannot be read, which turns the CPU
/// budget off rather than refusing everything.
fn thread_cpu_ns() -> u64 {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid, writable timespec for the duration of the call, and
    // CLOCK_THREAD_CPUTIME_ID is a clock every Linux kernel supports.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    if status != 0 {
        return 0;
    }
    let seconds = u64::try_from(time.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(time.tv_nsec).unwrap_or(0);
    seconds.saturating_mul(1_000_000_000).saturating_add(nanos)
}

fn attribute_bytes(attrs: &[Attribute]) -> usize {
    attrs.iter().map(|attr| attr.value.len()).sum()
}

/// Children of `node`'s parent: what `RcDom` searches to find `node` among them.
fn siblings_len(node: &Handle) -> usize {
    let parent = node.parent.take();
    let len = parent
        .as_ref()
        .and_then(Weak::upgrade)
        .map_or(0, |parent| parent.children.borrow().len());
    node.parent.set(parent);
    len
}

/// ammonia's `RcDom`, counting. Every call is delegated, so the tree builder sees exactly
/// the answers it will see in ammonia's own parse.
struct MeteredSink<'m> {
    dom: RcDom,
    meter: &'m Meter,
}

impl TreeSink for MeteredSink<'_> {
    type Handle = Handle;
    type Output = ();
    type ElemName<'a>
        = ExpandedName<'a>
    where
        Self: 'a;

    fn finish(self) {}

    fn parse_error(&self, _msg: Cow<'static, str>) {
        // `RcDom` keeps every message (ammonia's parse will); the dry run only counts them.
        self.meter.memory(PARSE_ERROR_BYTES);
    }

    fn get_document(&self) -> Handle {
        self.meter.step(1);
        self.dom.get_document()
    }

    fn elem_name<'a>(&'a self, target: &'a Handle) -> ExpandedName<'a> {
        self.meter.step(1);
        self.dom.elem_name(target)
    }

    fn create_element(&self, name: QualName, attrs: Vec<Attribute>, flags: ElementFlags) -> Handle {
        // ammonia's cleaning reads every attribute value (URL and CSS parsing, our filter),
        // and reconstructed formatting elements repeat them.
        self.meter.step(1 + attribute_bytes(&attrs));
        self.meter
            .memory(ELEMENT_BYTES + ATTRIBUTE_BYTES * attrs.len() + attribute_bytes(&attrs));
        self.meter.elements.set(self.meter.elements.get() + 1);
        if name.ns == ns!(html) && &*name.local == "selectedcontent" {
            // ammonia's cleaning walks its ancestors; there are fewer than the elements so
            // far.
            self.meter
                .step(usize::try_from(self.meter.elements.get()).unwrap_or(usize::MAX));
        }
        self.dom.create_element(name, attrs, flags)
    }

    fn create_comment(&self, text: StrTendril) -> Handle {
        self.meter.step(1);
        self.meter.memory(NODE_BYTES + text.len());
        self.dom.create_comment(text)
    }

    fn create_pi(&self, target: StrTendril, data: StrTendril) -> Handle {
        self.meter.step(1);
        self.meter.memory(NODE_BYTES + target.len() + data.len());
        self.dom.create_pi(target, data)
    }

    fn append(&self, parent: &Handle, child: NodeOrText<Handle>) {
        self.meter.step(1);
        if let NodeOrText::AppendText(text) = &child {
            // `RcDom` appends to a last child that is text, else makes a text node.
            let merged = parent
                .children
                .borrow()
                .last()
                .is_some_and(|last| matches!(last.data, NodeData::Text { .. }));
            self.meter
                .memory(text.len() + if merged { 0 } else { NODE_BYTES });
        }
        self.dom.append(parent, child);
    }

    fn append_based_on_parent_node(
        &self,
        element: &Handle,
        prev_element: &Handle,
        child: NodeOrText<Handle>,
    ) {
        self.meter.step(1 + siblings_len(element));
        match &child {
            NodeOrText::AppendNode(node) => self.meter.step(siblings_len(node)),
            NodeOrText::AppendText(text) => self.meter.memory(NODE_BYTES + text.len()),
        }
        self.dom
            .append_based_on_parent_node(element, prev_element, child);
    }

    fn append_doctype_to_document(
        &self,
        name: StrTendril,
        public_id: StrTendril,
        system_id: StrTendril,
    ) {
        self.meter.step(1);
        self.meter.memory(NODE_BYTES + name.len());
        self.dom
            .append_doctype_to_document(name, public_id, system_id);
    }

    fn mark_script_already_started(&self, node: &Handle) {
        self.meter.step(1);
        self.dom.mark_script_already_started(node);
    }

    fn pop(&self, node: &Handle) {
        self.meter.step(1);
        self.dom.pop(node);
    }

    fn get_template_contents(&self, target: &Handle) -> Handle {
        self.meter.step(1);
        self.dom.get_template_contents(target)
    }

    fn same_node(&self, x: &Handle, y: &Handle) -> bool {
        self.meter.step(1);
        self.dom.same_node(x, y)
    }

    fn set_quirks_mode(&self, mode: QuirksMode) {
        self.meter.step(1);
        self.dom.set_quirks_mode(mode);
    }

    fn append_before_sibling(&self, sibling: &Handle, new_node: NodeOrText<Handle>) {
        // `RcDom` looks for `sibling` among its parent's children, and for a moved node
        // among its old parent's.
        self.meter.step(1 + siblings_len(sibling));
        match &new_node {
            NodeOrText::AppendNode(node) => self.meter.step(siblings_len(node)),
            NodeOrText::AppendText(text) => self.meter.memory(NODE_BYTES + text.len()),
        }
        self.dom.append_before_sibling(sibling, new_node);
    }

    fn add_attrs_if_missing(&self, target: &Handle, attrs: Vec<Attribute>) {
        // `RcDom` builds a set of the attributes already there.
        let existing = match &target.data {
            NodeData::Element { attrs, .. } => attrs.borrow().len(),
            _ => 0,
        };
        self.meter
            .step(1 + MERGED_ATTRIBUTE_STEPS * (existing + attrs.len()) + attribute_bytes(&attrs));
        self.meter
            .memory(ATTRIBUTE_BYTES * attrs.len() + attribute_bytes(&attrs));
        self.dom.add_attrs_if_missing(target, attrs);
    }

    fn associate_with_form(
        &self,
        target: &Handle,
        form: &Handle,
        nodes: (&Handle, Option<&Handle>),
    ) {
        self.meter.step(1);
        self.dom.associate_with_form(target, form, nodes);
    }

    fn remove_from_parent(&self, target: &Handle) {
        self.meter.step(1 + siblings_len(target));
        self.dom.remove_from_parent(target);
    }

    fn reparent_children(&self, node: &Handle, new_parent: &Handle) {
        self.meter.step(1 + node.children.borrow().len());
        self.dom.reparent_children(node, new_parent);
    }

    fn is_mathml_annotation_xml_integration_point(&self, handle: &Handle) -> bool {
        self.meter.step(1);
        self.dom.is_mathml_annotation_xml_integration_point(handle)
    }

    fn set_current_line(&self, line_number: u64) {
        self.dom.set_current_line(line_number);
    }

    fn allow_declarative_shadow_roots(&self, intended_parent: &Handle) -> bool {
        self.meter.step(1);
        self.dom.allow_declarative_shadow_roots(intended_parent)
    }

    fn attach_declarative_shadow(
        &self,
        location: &Handle,
        template: &Handle,
        attrs: &[Attribute],
    ) -> bool {
        self.meter.step(1 + attrs.len());
        self.dom
            .attach_declarative_shadow(location, template, attrs)
    }

    fn maybe_clone_an_option_into_selectedcontent(&self, option: &Handle) {
        self.meter.step(1);
        self.dom.maybe_clone_an_option_into_selectedcontent(option);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::sanitize::samples::{Shape, hostile_html, ordinary_mail_html};

    /// Steps and memory only, so that the answers do not depend on the clock.
    fn counted(html_bytes: usize) -> Budget {
        Budget {
            cpu_ns_max: u64::MAX,
            ..Budget::for_input(html_bytes)
        }
    }

    #[test]
    fn ordinary_mail_uses_a_small_part_of_the_budget() {
        for target_bytes in [2 << 10, 256 << 10] {
            let html = ordinary_mail_html(target_bytes);
            let html_bytes = html.len() as u64;
            let usage = dry_run(&html, &counted(html.len())).expect("within budget");
            // Measured: 0.66 steps and ~10 DOM bytes per input byte.
            assert!(
                usage.steps <= html_bytes,
                "{usage:?} for {html_bytes} bytes"
            );
            assert!(
                usage.dom_bytes <= 16 * html_bytes,
                "{usage:?} for {html_bytes} bytes"
            );
        }
    }

    /// Each shape would cost 10x to 1000x its budget if parsed to the end; the dry run stops
    /// at the first chunk over it.
    #[test]
    fn superlinear_shapes_are_stopped_soon_after_their_budget() {
        const HTML_BYTES: usize = 128 << 10;
        let shapes = [
            Shape::DeepDivs,
            Shape::FosterParented,
            Shape::MergedHtmlAttributes,
            Shape::Reconstructed,
            Shape::ReconstructedLongLink,
            Shape::DeepSelectedContent,
        ];
        for shape in shapes {
            let html = hostile_html(shape, HTML_BYTES);
            let budget = counted(html.len());
            let exceeded = dry_run(&html, &budget).expect_err("over budget");
            assert_eq!(exceeded.resource, Resource::Steps, "{shape:?}");
            assert!(
                exceeded.usage.steps < 2 * budget.steps_max,
                "{shape:?}: {:?} of {budget:?}",
                exceeded.usage
            );
        }
    }

    /// No ordinary input comes near the memory budget (the bench's `Reconstructed` shape
    /// needs ~8,000 bytes per input byte); here a small budget shows where the dry run stops.
    #[test]
    fn the_memory_budget_stops_the_dry_run() {
        let html = ordinary_mail_html(64 << 10);
        let budget = Budget {
            steps_max: u64::MAX,
            dom_bytes_max: 100_000,
            cpu_ns_max: u64::MAX,
        };
        let exceeded = dry_run(&html, &budget).expect_err("over budget");
        assert_eq!(exceeded.resource, Resource::Memory);
        // One 4 KiB chunk of this mail builds ~40 KB of DOM.
        assert!(exceeded.usage.dom_bytes < 200_000, "{exceeded:?}");
    }

    /// The CPU budget is the only one that sees the tokenizer's attribute comparisons; the
    /// bench shows where the real budget stops them, this shows that it is looked at.
    #[test]
    fn the_cpu_budget_is_checked_after_every_chunk() {
        let html = hostile_html(Shape::ManyAttributes, 64 << 10);
        let budget = Budget {
            steps_max: u64::MAX,
            dom_bytes_max: u64::MAX,
            cpu_ns_max: 0,
        };
        let exceeded = dry_run(&html, &budget).expect_err("over budget");
        assert_eq!(exceeded.resource, Resource::CpuTime);
        // Only the fragment's context element and root: the first tag has not ended.
        assert!(exceeded.usage.dom_bytes <= 2 * 256, "{exceeded:?}");
    }
}
