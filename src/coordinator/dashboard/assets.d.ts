// The page's files are imported `with { type: "text" }` so that they are built into the binary; Bun
// then gives their text. These declarations say so to TypeScript. (index.html is cast where it is
// imported: bun-types already declares `*.html` as an HTML bundle, and that declaration wins.)
declare module "*/assets/app.js" {
  const text: string
  export default text
}
declare module "*/assets/app.css" {
  const text: string
  export default text
}
declare module "*/assets/favicon.svg" {
  const text: string
  export default text
}
