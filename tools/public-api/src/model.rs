//! Reads a crate's source the way the compiler finds it (from `src/lib.rs`,
//! through `mod` declarations), works out which items a user can name and
//! under which paths, and lists them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use syn::punctuated::Punctuated;
use syn::{Attribute, Fields, FnArg, ImplItem, Item, Meta, Pat, TraitItem, Type, UseTree, Visibility};

use crate::print::{stream, tokens};

/// One line of the listing, and where it sorts: by the item it belongs to,
/// then the item itself before its fields, methods and impls.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Line {
    pub owner: String,
    pub rank: u8,
    pub text: String,
}

const ITEM: u8 = 0;
const MEMBER: u8 = 1;
const METHOD: u8 = 2;
const IMPL: u8 = 3;

struct Module {
    parent: Option<usize>,
    children: BTreeMap<String, usize>,
    items: Vec<Item>,
    /// `#[cfg(..)]`s of this module and the modules around it.
    cfg: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Target {
    Module(usize),
    Item(usize, usize),
    External(Vec<String>),
}

/// A path a user can write, what it reaches, and the `cfg`s it needs.
struct Export {
    path: Vec<String>,
    target: Target,
    cfg: Vec<String>,
}

struct Leaf {
    path: Vec<String>,
    /// `None` for a glob (`use m::*`).
    name: Option<String>,
}

pub struct Crate {
    name: String,
    modules: Vec<Module>,
}

impl Crate {
    /// Loads `crate_name` (as written in paths: `tenancy_core`) from its
    /// `src/lib.rs`.
    pub fn load(crate_name: &str, lib_rs: &Path) -> Result<Self, String> {
        let mut krate = Crate { name: crate_name.to_owned(), modules: Vec::new() };
        let items = parse(lib_rs)?;
        let dir = lib_rs.parent().map(Path::to_path_buf).unwrap_or_default();
        krate.add_module(None, items, &dir, Vec::new())?;
        Ok(krate)
    }

    fn add_module(
        &mut self,
        parent: Option<usize>,
        items: Vec<Item>,
        dir: &Path,
        cfg: Vec<String>,
    ) -> Result<usize, String> {
        let id = self.modules.len();
        self.modules.push(Module { parent, children: BTreeMap::new(), items: Vec::new(), cfg: cfg.clone() });
        for item in &items {
            let Item::Mod(module) = item else { continue };
            if is_test_only(&module.attrs) {
                continue;
            }
            let name = module.ident.to_string();
            let path_attr = attr_string(&module.attrs, "path");
            let (child_items, child_dir) = match &module.content {
                Some((_, inline)) => (inline.clone(), dir.join(path_attr.as_deref().unwrap_or(&name))),
                None => {
                    let file = match &path_attr {
                        Some(path) => dir.join(path),
                        None if dir.join(format!("{name}.rs")).exists() => dir.join(format!("{name}.rs")),
                        None => dir.join(&name).join("mod.rs"),
                    };
                    // A file named by `#[path]` or `mod.rs` keeps its own
                    // modules next to it; `name.rs` keeps them in `name/`.
                    let child_dir = if path_attr.is_some() || file.ends_with("mod.rs") {
                        file.parent().map(Path::to_path_buf).unwrap_or_default()
                    } else {
                        dir.join(&name)
                    };
                    (parse(&file)?, child_dir)
                }
            };
            let mut child_cfg = cfg.clone();
            child_cfg.extend(cfgs(&module.attrs));
            let child = self.add_module(Some(id), child_items, &child_dir, child_cfg)?;
            self.modules[id].children.insert(name, child);
        }
        self.modules[id].items = items;
        Ok(id)
    }

    /// What `name` means inside module `m`.
    fn lookup(&self, m: usize, name: &str, depth: usize) -> Option<Target> {
        if depth > 32 {
            return None;
        }
        let module = &self.modules[m];
        if let Some(&child) = module.children.get(name) {
            return Some(Target::Module(child));
        }
        for (i, item) in module.items.iter().enumerate() {
            if is_test_only(attrs(item)) {
                continue;
            }
            if defined_name(item).as_deref() == Some(name) {
                return Some(Target::Item(m, i));
            }
        }
        let mut globs = Vec::new();
        for item in &module.items {
            let Item::Use(u) = item else { continue };
            if is_test_only(&u.attrs) {
                continue;
            }
            for leaf in leaves(&u.tree) {
                match &leaf.name {
                    Some(bound) if bound == name => return self.resolve(m, &leaf.path, depth + 1),
                    None => globs.push(leaf.path),
                    _ => {}
                }
            }
        }
        for glob in globs {
            if let Some(Target::Module(target)) = self.resolve(m, &glob, depth + 1) {
                if let Some(found) = self.lookup(target, name, depth + 1) {
                    return Some(found);
                }
            }
        }
        None
    }

    /// What `path` means inside module `m`; a path that does not start in
    /// this crate is another crate's.
    fn resolve(&self, m: usize, path: &[String], depth: usize) -> Option<Target> {
        let (first, rest) = path.split_first()?;
        let mut current = match first.as_str() {
            "crate" => Target::Module(0),
            "self" => Target::Module(m),
            "super" => Target::Module(self.modules[m].parent?),
            "" => return Some(Target::External(rest.to_vec())),
            name => match self.lookup(m, name, depth) {
                Some(found) => found,
                None => return Some(Target::External(path.to_vec())),
            },
        };
        for segment in rest {
            current = match current {
                Target::Module(id) if segment == "super" => Target::Module(self.modules[id].parent?),
                Target::Module(id) => self.lookup(id, segment, depth + 1)?,
                Target::External(mut p) => {
                    p.push(segment.clone());
                    Target::External(p)
                }
                // An enum variant or an associated item.
                Target::Item(..) => return None,
            };
        }
        Some(current)
    }

    /// Every path a user can write to reach something, with what it reaches.
    fn exports(&self) -> Vec<Export> {
        let mut out = Vec::new();
        self.exports_of(0, std::slice::from_ref(&self.name), &mut out, 0);
        for (m, module) in self.modules.iter().enumerate() {
            for (i, item) in module.items.iter().enumerate() {
                if let Item::Macro(mac) = item {
                    if has_attr(&mac.attrs, "macro_export")
                        && !is_hidden(&mac.attrs)
                        && !is_test_only(&mac.attrs)
                    {
                        if let Some(name) = &mac.ident {
                            let cfg = [module.cfg.clone(), cfgs(&mac.attrs)].concat();
                            out.push(Export {
                                path: vec![self.name.clone(), name.to_string()],
                                target: Target::Item(m, i),
                                cfg,
                            });
                        }
                    }
                }
            }
        }
        out
    }

    fn exports_of(&self, m: usize, at: &[String], out: &mut Vec<Export>, depth: usize) {
        if depth > 16 {
            return;
        }
        let module = &self.modules[m];
        for (i, item) in module.items.iter().enumerate() {
            let item_attrs = attrs(item);
            if !is_public(item) || is_hidden(item_attrs) || is_test_only(item_attrs) {
                continue;
            }
            let cfg = [module.cfg.clone(), cfgs(item_attrs)].concat();
            let path = |name: &str| [at, &[name.to_owned()]].concat();
            match item {
                Item::Mod(module_item) => {
                    let name = module_item.ident.to_string();
                    if let Some(&child) = module.children.get(&name) {
                        out.push(Export { path: path(&name), target: Target::Module(child), cfg });
                        self.exports_of(child, &path(&name), out, depth + 1);
                    }
                }
                Item::Use(u) => {
                    for leaf in leaves(&u.tree) {
                        let target = self
                            .resolve(m, &leaf.path, 0)
                            .unwrap_or_else(|| Target::External(leaf.path.clone()));
                        match (&leaf.name, target) {
                            (None, Target::Module(id)) => self.exports_of(id, at, out, depth + 1),
                            (None, Target::External(p)) => {
                                let target = Target::External([p, vec!["*".to_owned()]].concat());
                                out.push(Export { path: path("*"), target, cfg: cfg.clone() });
                            }
                            (None, Target::Item(..)) => {}
                            (Some(name), Target::Module(id)) => {
                                out.push(Export {
                                    path: path(name),
                                    target: Target::Module(id),
                                    cfg: cfg.clone(),
                                });
                                self.exports_of(id, &path(name), out, depth + 1);
                            }
                            (Some(name), target) => {
                                out.push(Export { path: path(name), target, cfg: cfg.clone() })
                            }
                        }
                    }
                }
                _ => {
                    if let Some(name) = defined_name(item) {
                        out.push(Export { path: path(&name), target: Target::Item(m, i), cfg });
                    }
                }
            }
        }
    }

    /// The listing: every public item, field, variant, method and impl.
    pub fn lines(&self) -> Vec<Line> {
        // Each item with the paths (and their `cfg`s) that reach it.
        let mut by_target: BTreeMap<(usize, usize), Vec<Export>> = BTreeMap::new();
        let mut lines = Vec::new();
        let mut modules = Vec::new();
        for export in self.exports() {
            let joined = export.path.join("::");
            let cfg = export.cfg.clone();
            match export.target {
                Target::Item(m, i) => by_target.entry((m, i)).or_default().push(export),
                Target::Module(id) => modules.push((joined, id, cfg)),
                Target::External(to) => lines.push(Line {
                    owner: joined.clone(),
                    rank: ITEM,
                    text: format!("{}pub use {joined} = {}", prefix(&cfg, &[]), to.join("::")),
                }),
            }
        }
        modules.sort();
        modules.dedup_by(|a, b| a.0 == b.0);
        for (path, _, cfg) in &modules {
            lines.push(Line {
                owner: path.clone(),
                rank: ITEM,
                text: format!("{}pub mod {path}", prefix(cfg, &[])),
            });
        }
        // The shortest path names the item; any other is an alias of it.
        let mut canonical: BTreeMap<(usize, usize), String> = BTreeMap::new();
        for (&(m, i), paths) in &mut by_target {
            paths.sort_by(|a, b| (a.path.len(), &a.path).cmp(&(b.path.len(), &b.path)));
            paths.dedup_by(|a, b| a.path == b.path);
            let name = paths[0].path.join("::");
            for alias in &paths[1..] {
                let text = format!("{}pub use {} = {name}", prefix(&alias.cfg, &[]), alias.path.join("::"));
                lines.push(Line { owner: alias.path.join("::"), rank: ITEM, text });
            }
            canonical.insert((m, i), name);
        }
        for (&(m, i), paths) in &by_target {
            let name = &canonical[&(m, i)];
            self.item_lines(&self.modules[m].items[i], name, &paths[0].cfg, &mut lines);
        }
        for (m, module) in self.modules.iter().enumerate() {
            for item in &module.items {
                if let Item::Impl(imp) = item {
                    if !is_hidden(&imp.attrs) && !is_test_only(&imp.attrs) {
                        let cfg = [module.cfg.clone(), cfgs(&imp.attrs)].concat();
                        self.impl_lines(m, imp, &cfg, &canonical, &mut lines);
                    }
                }
            }
        }
        lines.sort();
        lines.dedup();
        lines
    }

    fn item_lines(&self, item: &Item, name: &str, cfg: &[String], out: &mut Vec<Line>) {
        let head = prefix(cfg, attrs(item));
        let mut add = |rank: u8, text: String| out.push(Line { owner: name.to_owned(), rank, text });
        match item {
            Item::Fn(f) => match ["proc_macro", "proc_macro_attribute", "proc_macro_derive"]
                .into_iter()
                .find(|kind| has_attr(&f.attrs, kind))
            {
                // A derive is named by the attribute, not by the function.
                Some("proc_macro_derive") => {
                    let spec = f.attrs.iter().find(|a| a.path().is_ident("proc_macro_derive"));
                    add(ITEM, format!("{head}#[{}]", spec.map(|a| tokens(&a.meta)).unwrap_or_default()));
                }
                Some(kind) => add(ITEM, format!("{head}#[{kind}] pub fn {name}")),
                None => add(ITEM, format!("{head}pub {}", signature(&f.sig, name))),
            },
            Item::Struct(s) => {
                let (generics, bounds) = (tokens(&s.generics), where_clause(&s.generics));
                match &s.fields {
                    Fields::Named(fields) => {
                        let private = fields.named.iter().any(|f| !is_pub(&f.vis) || is_hidden(&f.attrs));
                        let marker = if private { " { private fields }" } else { "" };
                        add(ITEM, format!("{head}pub struct {name}{generics}{bounds}{marker}"));
                        for field in fields.named.iter().filter(|f| is_pub(&f.vis) && !is_hidden(&f.attrs)) {
                            add(
                                MEMBER,
                                format!(
                                    "{}pub {name}::{}",
                                    prefix(&cfgs(&field.attrs), &field.attrs),
                                    field_text(field)
                                ),
                            );
                        }
                    }
                    Fields::Unnamed(fields) => {
                        let shown: Vec<String> = fields
                            .unnamed
                            .iter()
                            .map(|f| {
                                if is_pub(&f.vis) {
                                    format!("pub {}", tokens(&f.ty))
                                } else {
                                    "_".to_owned()
                                }
                            })
                            .collect();
                        add(ITEM, format!("{head}pub struct {name}{generics}({}){bounds}", shown.join(", ")));
                    }
                    Fields::Unit => add(ITEM, format!("{head}pub struct {name}{generics}{bounds}")),
                }
                derive_lines(name, &s.attrs, s.fields.iter(), &head_cfg(cfg), &mut add);
            }
            Item::Enum(e) => {
                add(
                    ITEM,
                    format!("{head}pub enum {name}{}{}", tokens(&e.generics), where_clause(&e.generics)),
                );
                for variant in e.variants.iter().filter(|v| !is_hidden(&v.attrs)) {
                    let fields = match &variant.fields {
                        Fields::Named(f) => {
                            format!(
                                " {{ {} }}",
                                f.named.iter().map(field_text).collect::<Vec<_>>().join(", ")
                            )
                        }
                        Fields::Unnamed(f) => {
                            format!(
                                "({})",
                                f.unnamed.iter().map(|f| tokens(&f.ty)).collect::<Vec<_>>().join(", ")
                            )
                        }
                        Fields::Unit => String::new(),
                    };
                    let discriminant = variant
                        .discriminant
                        .as_ref()
                        .map(|(_, e)| format!(" = {}", tokens(e)))
                        .unwrap_or_default();
                    let variant_head = prefix(&cfgs(&variant.attrs), &variant.attrs);
                    add(MEMBER, format!("{variant_head}{name}::{}{fields}{discriminant}", variant.ident));
                }
                derive_lines(
                    name,
                    &e.attrs,
                    e.variants.iter().flat_map(|v| v.fields.iter()),
                    &head_cfg(cfg),
                    &mut add,
                );
            }
            Item::Union(u) => {
                add(
                    ITEM,
                    format!("{head}pub union {name}{}{}", tokens(&u.generics), where_clause(&u.generics)),
                );
                for field in u.fields.named.iter().filter(|f| is_pub(&f.vis) && !is_hidden(&f.attrs)) {
                    add(MEMBER, format!("pub {name}::{}", field_text(field)));
                }
            }
            Item::Trait(t) => {
                let unsafety = if t.unsafety.is_some() { "unsafe " } else { "" };
                let supertraits = if t.supertraits.is_empty() {
                    String::new()
                } else {
                    format!(": {}", tokens(&t.supertraits))
                };
                let (generics, bounds) = (tokens(&t.generics), where_clause(&t.generics));
                add(ITEM, format!("{head}pub {unsafety}trait {name}{generics}{supertraits}{bounds}"));
                for member in &t.items {
                    let (member_attrs, text) = match member {
                        TraitItem::Fn(f) => {
                            let provided = if f.default.is_some() { " (provided)" } else { "" };
                            (
                                &f.attrs,
                                format!(
                                    "{}{provided}",
                                    signature(&f.sig, &format!("{name}::{}", f.sig.ident))
                                ),
                            )
                        }
                        TraitItem::Type(ty) => {
                            let bounds = if ty.bounds.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", tokens(&ty.bounds))
                            };
                            let default = ty
                                .default
                                .as_ref()
                                .map(|(_, d)| format!(" = {}", tokens(d)))
                                .unwrap_or_default();
                            (
                                &ty.attrs,
                                format!("type {name}::{}{}{bounds}{default}", ty.ident, tokens(&ty.generics)),
                            )
                        }
                        TraitItem::Const(c) => {
                            let provided = if c.default.is_some() { " (provided)" } else { "" };
                            (&c.attrs, format!("const {name}::{}: {}{provided}", c.ident, tokens(&c.ty)))
                        }
                        _ => continue,
                    };
                    if !is_hidden(member_attrs) {
                        add(MEMBER, format!("{}{text}", prefix(&cfgs(member_attrs), member_attrs)));
                    }
                }
            }
            Item::Type(t) => {
                let (generics, bounds) = (tokens(&t.generics), where_clause(&t.generics));
                add(ITEM, format!("{head}pub type {name}{generics}{bounds} = {}", tokens(&t.ty)));
            }
            Item::Const(c) => {
                add(ITEM, format!("{head}pub const {name}: {} = {}", tokens(&c.ty), tokens(&c.expr)))
            }
            Item::Static(s) => {
                let mutability =
                    if matches!(s.mutability, syn::StaticMutability::Mut(_)) { "mut " } else { "" };
                add(ITEM, format!("{head}pub static {mutability}{name}: {}", tokens(&s.ty)));
            }
            Item::Macro(mac) => {
                add(ITEM, format!("{head}macro_rules! {name} {{ {} }}", matchers(&mac.mac.tokens)))
            }
            _ => {}
        }
    }

    /// The canonical name of what a type or trait path in module `m` means,
    /// if it is one of this crate's public items.
    fn public_name(
        &self,
        m: usize,
        path: &syn::Path,
        canonical: &BTreeMap<(usize, usize), String>,
    ) -> Option<String> {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        let segments =
            if path.leading_colon.is_some() { [vec![String::new()], segments].concat() } else { segments };
        match self.resolve(m, &segments, 0)? {
            Target::Item(im, ii) => canonical.get(&(im, ii)).cloned(),
            _ => None,
        }
    }

    /// The first of this crate's public types that `ty` mentions.
    fn public_type(
        &self,
        m: usize,
        ty: &Type,
        canonical: &BTreeMap<(usize, usize), String>,
    ) -> Option<String> {
        match ty {
            Type::Path(p) if p.qself.is_none() => self.public_name(m, &p.path, canonical).or_else(|| {
                p.path.segments.iter().find_map(|segment| match &segment.arguments {
                    syn::PathArguments::AngleBracketed(args) => args.args.iter().find_map(|arg| match arg {
                        syn::GenericArgument::Type(ty) => self.public_type(m, ty, canonical),
                        _ => None,
                    }),
                    _ => None,
                })
            }),
            Type::Reference(r) => self.public_type(m, &r.elem, canonical),
            Type::Slice(s) => self.public_type(m, &s.elem, canonical),
            Type::Array(a) => self.public_type(m, &a.elem, canonical),
            Type::Paren(p) => self.public_type(m, &p.elem, canonical),
            Type::Tuple(t) => t.elems.iter().find_map(|ty| self.public_type(m, ty, canonical)),
            _ => None,
        }
    }

    /// Whether a path in module `m` names one of this crate's items that
    /// users cannot name (a private trait, say).
    fn is_private_item(
        &self,
        m: usize,
        path: &syn::Path,
        canonical: &BTreeMap<(usize, usize), String>,
    ) -> bool {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        matches!(self.resolve(m, &segments, 0), Some(Target::Item(im, ii)) if !canonical.contains_key(&(im, ii)))
    }

    fn impl_lines(
        &self,
        m: usize,
        imp: &syn::ItemImpl,
        cfg: &[String],
        canonical: &BTreeMap<(usize, usize), String>,
        out: &mut Vec<Line>,
    ) {
        let mut self_ty = &*imp.self_ty;
        while let Type::Reference(r) = self_ty {
            self_ty = &r.elem;
        }
        let self_path = match self_ty {
            Type::Path(p) if p.qself.is_none() => Some(&p.path),
            _ => None,
        };
        let self_name = self_path.and_then(|p| self.public_name(m, p, canonical));
        let cfg_head = prefix(cfg, &[]);
        let generics = tokens(&imp.generics);
        let bounds = where_clause(&imp.generics);

        let Some((negative, trait_path, _)) = &imp.trait_ else {
            // Inherent methods and constants of a public type.
            let Some(owner) = self_name else { return };
            let context = if generics.is_empty() && bounds.is_empty() {
                String::new()
            } else {
                format!(" (in impl{generics} {}{bounds})", tokens(&imp.self_ty))
            };
            for member in &imp.items {
                let (member_attrs, vis, text) = match member {
                    ImplItem::Fn(f) => {
                        (&f.attrs, &f.vis, signature(&f.sig, &format!("{owner}::{}", f.sig.ident)))
                    }
                    ImplItem::Const(c) => {
                        (&c.attrs, &c.vis, format!("const {owner}::{}: {}", c.ident, tokens(&c.ty)))
                    }
                    ImplItem::Type(t) => {
                        (&t.attrs, &t.vis, format!("type {owner}::{} = {}", t.ident, tokens(&t.ty)))
                    }
                    _ => continue,
                };
                if is_pub(vis) && !is_hidden(member_attrs) && !is_test_only(member_attrs) {
                    let head = prefix(&[cfg, &cfgs(member_attrs)[..]].concat(), member_attrs);
                    out.push(Line {
                        owner: owner.clone(),
                        rank: METHOD,
                        text: format!("{head}pub {text}{context}"),
                    });
                }
            }
            return;
        };

        if self.is_private_item(m, trait_path, canonical) {
            return;
        }
        let trait_name = self.public_name(m, trait_path, canonical);
        // `impl From<SchemaName> for String` belongs with `SchemaName`.
        let argument_name = || match trait_path.segments.last().map(|s| &s.arguments) {
            Some(syn::PathArguments::AngleBracketed(args)) => args.args.iter().find_map(|arg| match arg {
                syn::GenericArgument::Type(ty) => self.public_type(m, ty, canonical),
                _ => None,
            }),
            _ => None,
        };
        let Some(owner) = self_name.clone().or_else(|| trait_name.clone()).or_else(argument_name) else {
            return;
        };
        // An external trait by its last segment (`Display`, `TryFrom<&str>`),
        // however the source spells its path.
        let trait_text = match (&trait_name, trait_path.segments.last()) {
            (Some(name), Some(last)) => format!("{name}{}", tokens(&last.arguments)),
            (None, Some(last)) => tokens(last),
            _ => return,
        };
        // The implementing type by its public name, references and generic
        // arguments kept: `&'a tenancy_core::Foo<T>`.
        let mut self_ty = (*imp.self_ty).clone();
        if let Some(name) = &self_name {
            let mut inner = &mut self_ty;
            while let Type::Reference(r) = inner {
                inner = &mut *r.elem;
            }
            if let (Type::Path(p), Ok(mut public)) = (inner, syn::parse_str::<syn::Path>(name)) {
                if let (Some(last), Some(written)) = (public.segments.last_mut(), p.path.segments.last()) {
                    last.arguments = written.arguments.clone();
                }
                p.path = public;
            }
        }
        let self_text = tokens(&self_ty);
        let unsafety = if imp.unsafety.is_some() { "unsafe " } else { "" };
        let not = if negative.is_some() { "!" } else { "" };
        let associated: Vec<String> = imp
            .items
            .iter()
            .filter_map(|member| match member {
                ImplItem::Type(t) => Some(format!("type {} = {};", t.ident, tokens(&t.ty))),
                ImplItem::Const(c) => Some(format!("const {}: {};", c.ident, tokens(&c.ty))),
                _ => None,
            })
            .collect();
        let body =
            if associated.is_empty() { String::new() } else { format!(" {{ {} }}", associated.join(" ")) };
        out.push(Line {
            owner,
            rank: IMPL,
            text: format!(
                "{cfg_head}{unsafety}impl{generics} {not}{trait_text} for {self_text}{bounds}{body}"
            ),
        });
    }
}

/// `#[derive(..)]` impls, and the `Display` and `From` impls that
/// thiserror's `Error` derive adds (`From` for each `#[from]` field).
fn derive_lines<'a>(
    name: &str,
    item_attrs: &[Attribute],
    fields: impl Iterator<Item = &'a syn::Field>,
    cfg: &str,
    add: &mut impl FnMut(u8, String),
) {
    let mut derived = Vec::new();
    for attr in item_attrs.iter().filter(|a| a.path().is_ident("derive")) {
        if let Ok(paths) = attr.parse_args_with(Punctuated::<syn::Path, syn::Token![,]>::parse_terminated) {
            derived.extend(paths.iter().filter_map(|p| p.segments.last().map(|s| s.ident.to_string())));
        }
    }
    for derive in &derived {
        add(IMPL, format!("{cfg}impl {derive} for {name} (derived)"));
    }
    if derived.iter().any(|d| d == "Error") {
        add(IMPL, format!("{cfg}impl Display for {name} (derived: Error)"));
        for field in fields.filter(|f| has_attr(&f.attrs, "from")) {
            add(IMPL, format!("{cfg}impl From<{}> for {name} (derived: Error, #[from])", tokens(&field.ty)));
        }
    }
}

/// `name: Type`.
fn field_text(field: &syn::Field) -> String {
    let ident = field.ident.as_ref().map(ToString::to_string).unwrap_or_default();
    format!("{ident}: {}", tokens(&field.ty))
}

fn parse(file: &Path) -> Result<Vec<Item>, String> {
    let source = fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let parsed = syn::parse_file(&source).map_err(|e| format!("cannot parse {}: {e}", file.display()))?;
    crate::expand::expand(parsed.items)
}

/// `fn name<..>(..) -> .. where ..`, with argument patterns reduced to their
/// names (`mut` on a binding is not part of the signature).
fn signature(sig: &syn::Signature, name: &str) -> String {
    let mut text = String::new();
    if sig.constness.is_some() {
        text.push_str("const ");
    }
    if sig.asyncness.is_some() {
        text.push_str("async ");
    }
    if sig.unsafety.is_some() {
        text.push_str("unsafe ");
    }
    if let Some(abi) = &sig.abi {
        text.push_str(&tokens(abi));
        text.push(' ');
    }
    let inputs: Vec<String> = sig
        .inputs
        .iter()
        .map(|input| match input {
            FnArg::Receiver(r) if r.colon_token.is_some() => format!("self: {}", tokens(&r.ty)),
            FnArg::Receiver(r) => match &r.reference {
                Some((_, lifetime)) => {
                    let lifetime = lifetime.as_ref().map(|l| format!("{l} ")).unwrap_or_default();
                    let mutability = if r.mutability.is_some() { "mut " } else { "" };
                    format!("&{lifetime}{mutability}self")
                }
                None => "self".to_owned(),
            },
            FnArg::Typed(t) => {
                let binding = match &*t.pat {
                    Pat::Ident(p) => p.ident.to_string(),
                    _ => "_".to_owned(),
                };
                format!("{binding}: {}", tokens(&t.ty))
            }
        })
        .collect();
    let variadic = if sig.variadic.is_some() { ", ..." } else { "" };
    let output = match &sig.output {
        syn::ReturnType::Default => String::new(),
        syn::ReturnType::Type(_, ty) => format!(" -> {}", tokens(ty)),
    };
    text.push_str(&format!(
        "fn {name}{}({}{variadic}){output}{}",
        tokens(&sig.generics),
        inputs.join(", "),
        where_clause(&sig.generics)
    ));
    text
}

fn where_clause(generics: &syn::Generics) -> String {
    match &generics.where_clause {
        Some(w) if !w.predicates.is_empty() => format!(" {}", tokens(w).trim_end_matches(',')),
        _ => String::new(),
    }
}

/// The matchers of a `macro_rules!`, which are what its callers may write.
fn matchers(rules: &proc_macro2::TokenStream) -> String {
    let mut found = Vec::new();
    let mut expect_matcher = true;
    for tree in rules.clone() {
        match tree {
            proc_macro2::TokenTree::Group(group) if expect_matcher => {
                found.push(stream(proc_macro2::TokenTree::Group(group).into()));
                expect_matcher = false;
            }
            proc_macro2::TokenTree::Punct(p) if p.as_char() == ';' => expect_matcher = true,
            _ => {}
        }
    }
    found.iter().map(|m| format!("{m} => ..")).collect::<Vec<_>>().join("; ")
}

/// The attributes that change what users may do with an item, then its
/// `cfg`s: `#[cfg(feature = "serde")] #[non_exhaustive] pub enum ..`.
fn prefix(cfg: &[String], item_attrs: &[Attribute]) -> String {
    let mut out = head_cfg(cfg);
    for attr in item_attrs {
        let path = attr.path();
        if ["non_exhaustive", "deprecated", "repr"].iter().any(|name| path.is_ident(name)) {
            out.push_str(&format!("#[{}] ", tokens(&attr.meta)));
        } else if path.is_ident("must_use") {
            // Its message is wording, not API.
            out.push_str("#[must_use] ");
        }
    }
    out
}

fn head_cfg(cfg: &[String]) -> String {
    cfg.iter().map(|c| format!("#[cfg({c})] ")).collect()
}

fn cfgs(item_attrs: &[Attribute]) -> Vec<String> {
    item_attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg"))
        .filter_map(|a| match &a.meta {
            Meta::List(list) => Some(stream(list.tokens.clone())),
            _ => None,
        })
        .collect()
}

fn is_test_only(item_attrs: &[Attribute]) -> bool {
    cfgs(item_attrs).iter().any(|c| c == "test")
}

fn is_hidden(item_attrs: &[Attribute]) -> bool {
    item_attrs.iter().any(|a| {
        a.path().is_ident("doc")
            && matches!(&a.meta, Meta::List(list) if list.tokens.clone().into_iter().any(|t| t.to_string() == "hidden"))
    })
}

fn has_attr(item_attrs: &[Attribute], name: &str) -> bool {
    item_attrs.iter().any(|a| a.path().is_ident(name))
}

fn attr_string(item_attrs: &[Attribute], name: &str) -> Option<String> {
    item_attrs.iter().find(|a| a.path().is_ident(name)).and_then(|a| match &a.meta {
        Meta::NameValue(nv) => match &nv.value {
            syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

fn is_pub(vis: &Visibility) -> bool {
    matches!(vis, Visibility::Public(_))
}

fn is_public(item: &Item) -> bool {
    let vis = match item {
        Item::Const(i) => &i.vis,
        Item::Enum(i) => &i.vis,
        Item::ExternCrate(i) => &i.vis,
        Item::Fn(i) => &i.vis,
        Item::Mod(i) => &i.vis,
        Item::Static(i) => &i.vis,
        Item::Struct(i) => &i.vis,
        Item::Trait(i) => &i.vis,
        Item::TraitAlias(i) => &i.vis,
        Item::Type(i) => &i.vis,
        Item::Union(i) => &i.vis,
        Item::Use(i) => &i.vis,
        _ => return false,
    };
    is_pub(vis)
}

fn attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// The name an item defines in its module (modules and imports aside).
fn defined_name(item: &Item) -> Option<String> {
    let ident = match item {
        Item::Const(i) => &i.ident,
        Item::Enum(i) => &i.ident,
        Item::Fn(i) => &i.sig.ident,
        Item::Static(i) => &i.ident,
        Item::Struct(i) => &i.ident,
        Item::Trait(i) => &i.ident,
        Item::TraitAlias(i) => &i.ident,
        Item::Type(i) => &i.ident,
        Item::Union(i) => &i.ident,
        Item::Macro(i) => i.ident.as_ref()?,
        _ => return None,
    };
    Some(ident.to_string())
}

/// `use a::{b, c::d as e, f::*}` as `a::b` (b), `a::c::d` (e), `a::f::*`.
fn leaves(tree: &UseTree) -> Vec<Leaf> {
    fn walk(tree: &UseTree, prefix: &mut Vec<String>, out: &mut Vec<Leaf>) {
        match tree {
            UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                walk(&p.tree, prefix, out);
                prefix.pop();
            }
            UseTree::Name(n) if n.ident == "self" => {
                out.push(Leaf { path: prefix.clone(), name: prefix.last().cloned() });
            }
            UseTree::Name(n) => {
                let mut path = prefix.clone();
                path.push(n.ident.to_string());
                out.push(Leaf { path, name: Some(n.ident.to_string()) });
            }
            UseTree::Rename(r) => {
                let mut path = prefix.clone();
                path.push(r.ident.to_string());
                out.push(Leaf { path, name: Some(r.rename.to_string()) });
            }
            UseTree::Glob(_) => out.push(Leaf { path: prefix.clone(), name: None }),
            UseTree::Group(g) => {
                for tree in &g.items {
                    walk(tree, prefix, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(tree, &mut Vec::new(), &mut out);
    out
}

/// Where a crate's `src/lib.rs` is, given the crate's directory.
pub fn lib_rs(crate_dir: &Path) -> PathBuf {
    crate_dir.join("src").join("lib.rs")
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use super::Crate;

    /// A crate on disk, removed when dropped.
    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn listing(files: &[(&str, &str)]) -> Vec<String> {
        let dir = std::env::temp_dir().join(format!("public-api-test-{}", std::process::id()));
        let scratch = Scratch(dir.clone());
        for (path, source) in files {
            let path = scratch.0.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, source).unwrap();
        }
        let krate = Crate::load("demo", &dir.join("src/lib.rs")).unwrap();
        krate.lines().into_iter().map(|l| l.text).collect()
    }

    #[test]
    fn lists_what_users_can_name_under_the_path_they_name_it_by() {
        let lines = listing(&[
            (
                "src/lib.rs",
                r#"
                mod inner;
                pub mod open;
                #[doc(hidden)]
                pub mod hidden { pub fn h() {} }
                #[path = "elsewhere.rs"]
                mod moved;
                pub use inner::{helper as renamed, Thing};
                pub use inner::deep::*;
                pub use moved::Moved;
                pub use other_crate::Item;
                #[cfg(test)]
                mod tests;
                trait Private {}
                impl Private for Thing {}
                "#,
            ),
            (
                "src/inner.rs",
                r#"
                pub mod deep;
                /// Docs are not API.
                #[derive(Clone, Debug)]
                #[non_exhaustive]
                pub struct Thing { pub a: u8, b: u8 }
                impl Thing {
                    pub fn new(mut x: u8) -> Self { Thing { a: x, b: 0 } }
                    pub(crate) fn internal(&self) {}
                    #[doc(hidden)]
                    pub fn secret() {}
                }
                impl std::fmt::Display for Thing {
                    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { Ok(()) }
                }
                impl From<Thing> for String {
                    fn from(t: Thing) -> String { String::new() }
                }
                pub fn helper() {}
                pub struct Unreachable;
                "#,
            ),
            (
                "src/inner/deep.rs",
                r#"
                pub enum Kind { A, B(u8), C { x: crate::inner::Thing } }
                #[cfg(feature = "x")]
                impl super::Thing { pub fn extra(&self) -> Option<&Self> { None } }
                "#,
            ),
            (
                "src/open.rs",
                "pub struct Open;\n#[macro_export]\nmacro_rules! mac { ($x:expr) => {}; () => {} }\n",
            ),
            ("src/elsewhere.rs", "pub struct Moved(pub u8, u16);\n"),
        ]);
        let expected = [
            "pub struct demo::Moved(pub u8, _)",
            "pub enum demo::Kind",
            "demo::Kind::A",
            "demo::Kind::B(u8)",
            "demo::Kind::C { x: Thing }",
            "#[non_exhaustive] pub struct demo::Thing { private fields }",
            "pub demo::Thing::a: u8",
            "pub fn demo::Thing::new(x: u8) -> Self",
            "#[cfg(feature = \"x\")] pub fn demo::Thing::extra(&self) -> Option<&Self>",
            "impl Clone for demo::Thing (derived)",
            "impl Debug for demo::Thing (derived)",
            "impl Display for demo::Thing",
            "impl From<Thing> for String",
            "pub use demo::Item = other_crate::Item",
            "macro_rules! demo::mac { ($x:expr) => ..; () => .. }",
            "pub mod demo::open",
            "pub struct demo::open::Open",
            "pub fn demo::renamed()",
        ];
        for line in expected {
            assert!(lines.iter().any(|l| l == line), "missing {line:?} in\n{}", lines.join("\n"));
        }
        assert_eq!(lines.len(), expected.len(), "unexpected lines in\n{}", lines.join("\n"));
    }
}
